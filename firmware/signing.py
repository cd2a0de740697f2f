"""Ed25519 signatures over firmware SHA-256 digests.

The platform signs the raw 32-byte digest of every image it stores; a device
verifies the signature with the public key (`firmwareSigningKey`, base64 of the
raw 32 bytes) before installing, so an image changed in storage or in transit is
refused even when its digest was changed along with it.

Where the private key comes from, first match wins:
1. FIRMWARE_SIGNING_KEY: base64 of the raw 32-byte key, or a PEM (PKCS#8) key;
2. FIRMWARE_SIGNING_KEY_FILE: a file holding either form;
3. production: nothing, so the API refuses to start (SigningKeyUnavailable);
4. test: a key generated in memory for this process;
5. development: .data/firmware-signing.key, generated (mode 0600) on first use, so
   `make run` signs with the same key across restarts.
Only the API process holds the key; the ingest worker never needs it.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from core.private_dir import make_private_dir
from core.settings import ApiSettings

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
DEVELOPMENT_KEY_FILE = ROOT / ".data" / "firmware-signing.key"
RAW_KEY_BYTES = 32


class SigningKeyUnavailable(RuntimeError):
    """No usable signing key: missing in production, unreadable or malformed."""


@dataclass(frozen=True, slots=True)
class Signer:
    """Signs digests with one private key; `public_key` is what devices verify with."""

    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> str:
        """The public key, base64 of its raw 32 bytes."""
        raw = self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return base64.b64encode(raw).decode()

    def sign_digest(self, digest: bytes) -> str:
        """The base64 Ed25519 signature of a raw SHA-256 digest."""
        if len(digest) != 32:
            raise ValueError("a SHA-256 digest is 32 bytes")
        return base64.b64encode(self.private_key.sign(digest)).decode()


def verify_digest(public_key: str, digest: bytes, signature: str) -> bool:
    """Whether `signature` (base64) is `public_key`'s (base64 raw) signature of `digest`."""
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key, validate=True))
        key.verify(base64.b64decode(signature, validate=True), digest)
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


def parse_private_key(text: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM (PKCS#8) or base64 of the raw 32 bytes."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError) as err:
            raise SigningKeyUnavailable(f"not a readable PEM private key ({err})") from err
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyUnavailable("the PEM key is not an Ed25519 key")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error as err:
        raise SigningKeyUnavailable("not base64 and not PEM") from err
    if len(raw) != RAW_KEY_BYTES:
        raise SigningKeyUnavailable(
            f"a raw Ed25519 key is {RAW_KEY_BYTES} bytes, this one is {len(raw)}"
        )
    return Ed25519PrivateKey.from_private_bytes(raw)


def private_key_pem(key: Ed25519PrivateKey) -> str:
    """PEM (PKCS#8, unencrypted) of a private key, as FIRMWARE_SIGNING_KEY_FILE holds it."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _read_key_file(path: Path) -> Ed25519PrivateKey:
    try:
        text = path.read_text()
    except OSError as err:
        raise SigningKeyUnavailable(f"cannot read {path}: {err.strerror}") from err
    return parse_private_key(text)


def _development_key(path: Path) -> Ed25519PrivateKey:
    """The development key at `path`, created (0600, never overwritten) if missing."""
    if path.exists():
        return _read_key_file(path)
    key = Ed25519PrivateKey.generate()
    make_private_dir(path.parent)
    try:
        # O_EXCL: two processes starting together keep the first one's key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key_file(path)
    with os.fdopen(fd, "w") as handle:
        handle.write(private_key_pem(key))
    logger.info("generated a development firmware signing key in %s", path)
    return key


def load_signer(settings: ApiSettings, *, development_key_file: Path | None = None) -> Signer:
    """The signer `settings` describe (see the module docstring for the order)."""
    if settings.firmware_signing_key is not None:
        return Signer(parse_private_key(settings.firmware_signing_key.get_secret_value()))
    if settings.firmware_signing_key_file:
        return Signer(_read_key_file(Path(settings.firmware_signing_key_file)))
    if settings.environment == "production":
        raise SigningKeyUnavailable(
            "FIRMWARE_SIGNING_KEY or FIRMWARE_SIGNING_KEY_FILE must be set when "
            "ENVIRONMENT=production (an Ed25519 key: `python -m firmware.keygen`)."
        )
    if settings.environment == "test":
        return Signer(Ed25519PrivateKey.generate())
    return Signer(_development_key(development_key_file or DEVELOPMENT_KEY_FILE))


_signers: dict[tuple[str, str | None, str | None], Signer] = {}


def signer_for(settings: ApiSettings) -> Signer:
    """The process's signer for `settings`, loaded once (a test key stays the same)."""
    secret = settings.firmware_signing_key
    cache_key = (
        settings.environment,
        secret.get_secret_value() if secret is not None else None,
        settings.firmware_signing_key_file,
    )
    signer = _signers.get(cache_key)
    if signer is None:
        signer = _signers[cache_key] = load_signer(settings)
    return signer
