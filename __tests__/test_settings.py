from pathlib import Path

import pytest

from app.settings import ConfigError, Settings


def test_defaults_and_overrides():
    settings = Settings.from_env({"MODEL_DIR": "/m", "WORKERS": "2", "MAX_UPLOAD_MB": "5", "CORS_ORIGINS": "a, b"})
    assert settings.model_dir == Path("/m")
    assert settings.backend == "auto"
    assert settings.max_upload_bytes == 5 * 1024 * 1024
    assert settings.cors_origins == ("a", "b")
    assert settings.engine_threads >= 1


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BACKEND": "tensorflow"}, "BACKEND='tensorflow' is not one of"),
        ({"WORKERS": "two"}, "WORKERS='two' is not a int"),
        ({"MAX_UPLOAD_MB": "-1"}, "must be at least"),
        ({"JPEG_QUALITY": "101"}, "between 1 and 100"),
    ],
)
def test_bad_values_are_one_clear_error(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)
