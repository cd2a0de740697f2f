"""Signing keys: where they come from, what production requires, what devices verify."""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from core.settings import Settings
from firmware import keygen
from firmware.signing import (
    Signer,
    SigningKeyUnavailable,
    load_signer,
    parse_private_key,
    private_key_pem,
    verify_digest,
)
from tests.client import Api
from tests.contract import op
from tests.factories import register
from tests.processes import api_process

DIGEST = hashlib.sha256(b"image").digest()


def raw_b64(key: Ed25519PrivateKey) -> str:
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(raw).decode()


def bare(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_load_signer_from_base64_pem_and_file_agree(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "signing.pem"
    path.write_text(private_key_pem(key))
    signers = [
        load_signer(bare(firmware_signing_key=raw_b64(key))),
        load_signer(bare(firmware_signing_key=private_key_pem(key))),
        load_signer(bare(firmware_signing_key_file=str(path))),
    ]
    assert len({signer.public_key for signer in signers}) == 1
    signature = signers[0].sign_digest(DIGEST)
    assert verify_digest(signers[1].public_key, DIGEST, signature)
    assert not verify_digest(signers[1].public_key, hashlib.sha256(b"x").digest(), signature)
    assert not verify_digest(signers[1].public_key, DIGEST, "not base64!")


@pytest.mark.parametrize("text", ["", "not-base64!", base64.b64encode(b"short").decode(),
                                  "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"])  # fmt: skip
def test_parse_private_key_refuses_malformed(text: str) -> None:
    with pytest.raises(SigningKeyUnavailable):
        parse_private_key(text)


def test_load_signer_refuses_missing_key_in_production(tmp_path: Path) -> None:
    production = bare(environment="production", jwt_secret="x" * 48, device_credential_key="k" * 48)
    with pytest.raises(SigningKeyUnavailable, match="FIRMWARE_SIGNING_KEY"):
        load_signer(production, development_key_file=tmp_path / "never-used.key")
    assert not (tmp_path / "never-used.key").exists()
    with pytest.raises(SigningKeyUnavailable, match="cannot read"):
        load_signer(bare(firmware_signing_key_file=str(tmp_path / "missing.pem")))


def test_load_signer_generates_development_key_once(tmp_path: Path) -> None:
    path = tmp_path / "data" / "firmware-signing.key"
    first = load_signer(bare(environment="development"), development_key_file=path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_signer(bare(environment="development"), development_key_file=path)
    assert again.public_key == first.public_key
    # Tests never write a key: each test process has its own in memory.
    assert isinstance(load_signer(bare(environment="test")), Signer)


def test_keygen_writes_key_file_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "k.pem"
    assert keygen.main([str(path)]) == 0
    public = capsys.readouterr().err.strip().removeprefix("public key: ")
    assert load_signer(bare(firmware_signing_key_file=str(path))).public_key == public
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        keygen.main([str(path)])
    assert keygen.main([]) == 0
    printed = capsys.readouterr()
    assert Signer(parse_private_key(printed.out)).public_key in printed.err


async def test_api_in_production_refuses_to_start_without_signing_key(settings: Settings) -> None:
    production = settings.model_copy(
        update={
            "environment": "production",
            "jwt_secret": SecretStr("j" * 48),
            "firmware_signing_key": None,
        }
    )
    with pytest.raises(RuntimeError, match="FIRMWARE_SIGNING_KEY"):
        async with api_process(production):
            pass


async def test_api_in_production_signs_with_configured_key(settings: Settings) -> None:
    key = Ed25519PrivateKey.generate()
    production = settings.model_copy(
        update={
            "environment": "production",
            "jwt_secret": SecretStr("j" * 48),
            "firmware_signing_key": SecretStr(raw_b64(key)),
        }
    )
    async with api_process(production) as url, Api(url) as api:
        session = await register(api)
        result = await api.execute(op("FirmwareSigningKey"), token=session.access_token)
    assert result.data["firmwareSigningKey"] == Signer(key).public_key
