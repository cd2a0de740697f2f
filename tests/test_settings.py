"""The settings refuse development secrets outside development."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from core.settings import DEVELOPMENT_JWT_SECRET, Settings


def test_refuse_production_default_jwt_secret() -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        Settings(_env_file=None, environment="production")  # type: ignore[call-arg]


def test_refuse_production_short_jwt_secret() -> None:
    with pytest.raises(ValidationError, match="at least 32"):
        Settings(_env_file=None, environment="production", jwt_secret="short")  # type: ignore[call-arg]


def test_accept_production_strong_jwt_secret() -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        environment="production",
        jwt_secret="x" * 48,
        device_credential_key="k" * 48,
    )
    assert settings.jwt_secret.get_secret_value() != DEVELOPMENT_JWT_SECRET


@pytest.mark.parametrize("key", [None, "short"])
def test_refuse_production_weak_device_credential_key(key: str | None) -> None:
    extra = {} if key is None else {"device_credential_key": key}
    with pytest.raises(ValidationError, match="DEVICE_CREDENTIAL_KEY"):
        Settings(_env_file=None, environment="production", jwt_secret="x" * 48, **extra)  # type: ignore[call-arg]


def test_read_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGODB_URL", "mongodb://db.example:27017")
    monkeypatch.setenv("ACCESS_TOKEN_TTL_SECONDS", "60")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.mongodb_url == "mongodb://db.example:27017"
    assert settings.access_token_ttl_seconds == 60


def test_keep_jwt_secret_out_of_repr() -> None:
    settings = Settings(_env_file=None, jwt_secret="s3cr3t-value-that-must-not-leak-0000000")  # type: ignore[call-arg]
    assert "s3cr3t" not in repr(settings)
    assert "s3cr3t" not in str(settings.model_dump())


def test_readme_configuration_names_every_setting() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme[readme.index("## Configuration") :]
    table = table[: table.index("\n## ", 1)]
    missing = [name.upper() for name in Settings.model_fields if name.upper() not in table]
    assert not missing, f"settings missing from README's configuration section: {missing}"
