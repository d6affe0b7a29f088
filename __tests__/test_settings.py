import os
from pathlib import Path

import pytest
from support import ROOT

from app.settings import ConfigError, Settings


def test_defaults_and_overrides():
    settings = Settings.from_env(
        {"MODEL_DIR": "/m", "WORKERS": "2", "MAX_UPLOAD_MB": "5", "CORS_ORIGINS": "https://a.example, http://b:8080"}
    )
    assert settings.model_dir == Path("/m")
    assert settings.backend == "auto"
    assert settings.max_upload_bytes == 5 * 1024 * 1024
    assert settings.cors_origins == ("https://a.example", "http://b:8080")
    assert settings.engine_threads >= 1


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BACKEND": "tensorflow"}, "BACKEND='tensorflow' is not one of"),
        ({"WORKERS": "two"}, "WORKERS='two' is not a whole number"),
        ({"PORT": "80 80"}, "PORT='80 80' is not a whole number"),
        ({"TIMEOUT": "-1"}, "TIMEOUT='-1' must be between 0 and 86400"),
        ({"FRONT": "apache"}, "FRONT='apache' is not one of auto, nginx, none"),
        ({"MAX_UPLOAD_MB": "-1"}, "must be between"),
        ({"JPEG_QUALITY": "101"}, "between 1 and 100"),
    ],
)
def test_bad_values_are_one_clear_error(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_the_server_settings_gunicorn_uses_are_read_here_too():
    settings = Settings.from_env(
        {"PORT": "9000", "TIMEOUT": "300", "MAX_REQUESTS": "0", "FRONT": "NONE", "QUEUE_DEPTH": "10"}
    )
    assert (settings.port, settings.timeout_s, settings.max_requests, settings.front) == (9000, 300, 0, "none")
    assert settings.threads == settings.active_photos + 10 + 4  # the queue's photos plus the spares
    assert Settings.from_env({"PORT": "9000", "SAGEMAKER_BIND_TO_PORT": "8081"}).port == 8081  # SageMaker's wins
    assert Settings.from_env({}).workers >= 1


@pytest.mark.parametrize(
    ("value", "host"),
    [("", "0.0.0.0"), ("127.0.0.1", "127.0.0.1"), ("::1", "::1"), ("[::]", "::")],  # noqa: S104
)
def test_host_is_an_address_every_interface_unless_set(value, host):
    assert Settings.from_env({"HOST": value}).host == host


@pytest.mark.parametrize("value", ["localhost", "0.0.0.0:8080", "lab-server", "999.1.1.1"])
def test_a_host_that_is_no_ip_address_is_one_clear_error(value):
    with pytest.raises(ConfigError) as refusal:
        Settings.from_env({"HOST": value})
    assert str(refusal.value).startswith(f"HOST={value!r} is not an IP address (0.0.0.0: every interface;")


NUMBER_SETTINGS = (
    "WORKERS", "PORT", "SAGEMAKER_BIND_TO_PORT", "TIMEOUT", "MAX_REQUESTS", "MAX_BATCH", "ACTIVE_PHOTOS",
    "QUEUE_DEPTH", "THREADS", "MAX_BATCH_DELAY_MS", "ENGINE_THREADS", "INT8_MIN_AGREEMENT", "MAX_UPLOAD_MB",
    "MAX_IMAGE_MEGAPIXELS", "REQUEST_DEADLINE_S", "PIXEL_BUDGET_MEGAPIXELS", "JPEG_QUALITY",
    "TILE_OVERLAP",
)  # fmt: skip


@pytest.mark.parametrize("name", NUMBER_SETTINGS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "1e12"])
def test_every_number_setting_refuses_nan_infinity_and_out_of_bounds_with_one_line(name, value):
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({name: value})
    message = str(refused.value)
    assert message.startswith(f"{name}={value!r}") and "\n" not in message
    assert "finite" in message or "between" in message or "whole number" in message


def test_a_worker_count_no_machine_could_run_is_refused():
    with pytest.raises(ConfigError, match="WORKERS='100000' must be between 1 and"):
        Settings.from_env({"WORKERS": "100000"})


def test_an_api_keys_file_must_be_a_small_regular_file(tmp_path):
    """A FIFO hung the start; /dev/zero ate the memory."""
    fifo = tmp_path / "keys.fifo"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero"), tmp_path):
        with pytest.raises(ConfigError, match="not a regular file"):
            Settings.from_env({"API_KEYS_FILE": str(path)})
    huge = tmp_path / "keys.txt"
    huge.write_text("k\n" * 600_000)
    with pytest.raises(ConfigError, match="larger than 1024 KB"):
        Settings.from_env({"API_KEYS_FILE": str(huge)})


def test_the_docs_table_is_the_one_the_declarations_make():
    from app.settings import settings_table

    docs = (ROOT / "docs" / "operations.md").read_text()
    assert settings_table() in docs, "run `python -m app.settings` and paste its table into docs/operations.md"


def test_every_declared_setting_is_read_from_its_variable():
    from dataclasses import fields

    from app.settings import LabelStudioSettings

    declared = [item for owner in (Settings, LabelStudioSettings) for item in fields(owner) if item.metadata]
    assert len({item.metadata["env"] for item in declared}) == len(declared)  # one variable, one field
    for item in declared:
        meta = item.metadata
        if meta["min"] is None or meta["env"] in ("PORT",):
            continue
        # A value past the declared bound is refused by name: the loop reads what is declared.
        too_big = (meta["max"]() if callable(meta["max"]) else meta["max"]) * 2 + 1
        with pytest.raises(ConfigError, match=meta["env"]):
            Settings.from_env({meta["env"]: str(too_big)})
