"""Each process reads its own settings; they refuse development secrets outside development."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from core.settings import (
    DEVELOPMENT_JWT_SECRET,
    ApiSettings,
    CommonSettings,
    Settings,
    WorkerSettings,
)
from tests.net import ROOT


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
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Configuration") :]
    table = table[: table.index("\n## ", 1)]
    missing = [name.upper() for name in Settings.model_fields if name.upper() not in table]
    assert not missing, f"settings missing from README's configuration section: {missing}"


def _process(name: str) -> str:
    if name in CommonSettings.model_fields:
        return "all"
    in_api, in_worker = name in ApiSettings.model_fields, name in WorkerSettings.model_fields
    assert in_api != in_worker, f"{name}: in both process classes, belongs in CommonSettings"
    return "API" if in_api else "worker"


def test_readme_configuration_names_the_process_reading_each_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Configuration") :]
    section = section[: section.index("\n## ", 1)]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| `")]
    assert rows
    for row in rows:
        names = re.findall(r"`([A-Z0-9_]+)`", row[0])
        claimed = row[1].strip()
        actual = {_process(name.lower()) for name in names}
        assert actual == {claimed}, f"{names}: README says {claimed}, core/settings.py {actual}"


def test_settings_whole_platform_is_both_processes_and_nothing_more() -> None:
    assert set(Settings.model_fields) == set(ApiSettings.model_fields) | set(
        WorkerSettings.model_fields
    )
    # What each process reads beyond the common base, the other never does.
    api_only = set(ApiSettings.model_fields) - set(CommonSettings.model_fields)
    worker_only = set(WorkerSettings.model_fields) - set(CommonSettings.model_fields)
    assert not api_only & worker_only
    assert "jwt_secret" in api_only and "ingest_batch_size" in worker_only


def test_accept_production_worker_without_jwt_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    # A worker holds no token secret: production needs only what the worker reads.
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("DEVICE_CREDENTIAL_KEY", "k" * 48)
    monkeypatch.setenv("INGEST_BATCH_SIZE", "7")
    worker = WorkerSettings(_env_file=None)  # type: ignore[call-arg]
    assert worker.ingest_batch_size == 7
    assert not hasattr(worker, "jwt_secret")
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        ApiSettings(_env_file=None)  # type: ignore[call-arg]


def test_refuse_production_worker_weak_device_credential_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="DEVICE_CREDENTIAL_KEY"):
        WorkerSettings(_env_file=None)  # type: ignore[call-arg]
