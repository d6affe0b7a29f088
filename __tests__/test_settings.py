from pathlib import Path

import pytest

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
        ({"TIMEOUT": "-1"}, "TIMEOUT='-1' must be at least 0"),
        ({"FRONT": "apache"}, "FRONT='apache' is not one of auto, nginx, none"),
        ({"MAX_UPLOAD_MB": "-1"}, "must be at least"),
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
