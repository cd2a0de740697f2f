"""Device MQTT passwords: derived here, kept only as Mosquitto-style PBKDF2 hashes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

# Mosquitto's "$7$" format (PBKDF2-SHA512), so the broker could check these hashes too.
_SCHEME = "7"
_ITERATIONS = 1000
_SALT_BYTES = 12


@dataclass(frozen=True, slots=True)
class PasswordHash:
    iterations: int
    salt: bytes
    digest: bytes

    def encode(self) -> str:
        salt = base64.b64encode(self.salt).decode()
        digest = base64.b64encode(self.digest).decode()
        return f"${_SCHEME}${self.iterations}${salt}${digest}"

    @classmethod
    def decode(cls, encoded: str) -> PasswordHash:
        _, scheme, iterations, salt, digest = encoded.split("$")
        if scheme != _SCHEME:
            raise ValueError(f"unknown password hash scheme {scheme!r}")
        return cls(int(iterations), base64.b64decode(salt), base64.b64decode(digest))


def hash_mqtt_password(password: str) -> str:
    """A salted PBKDF2-SHA512 hash (the password itself is a 256-bit HMAC output)."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _ITERATIONS)
    return PasswordHash(_ITERATIONS, salt, digest).encode()


def verify_mqtt_password(password: str, encoded: str) -> bool:
    """True when `password` matches the stored hash (constant-time compare)."""
    stored = PasswordHash.decode(encoded)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), stored.salt, stored.iterations)
    return hmac.compare_digest(digest, stored.digest)


def derive_mqtt_password(key: str, device_id: str, version: int) -> str:
    """The MQTT password of one device at one credentials version.

    Derived rather than random so the platform can give a broker that lost its state
    the current passwords again (Mosquitto 2.0's control API takes only plaintext).
    """
    digest = hmac.new(key.encode(), f"{device_id}:{version}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def secret_fingerprint(key: str, secret: str) -> str:
    """A short keyed digest of `secret`: tells whether the broker holds the current one."""
    message = f"fingerprint:{secret}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()[:16]
