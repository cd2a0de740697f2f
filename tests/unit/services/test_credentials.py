"""Device MQTT password hashes: Mosquitto's PBKDF2-SHA512 "$7$" format."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from services.credentials import (
    PasswordHash,
    hash_mqtt_password,
    verify_mqtt_password,
)
from services.tokens import new_opaque_token

# $7$<iterations>$<standard base64 salt>$<standard base64 PBKDF2-SHA512 digest>
MOSQUITTO_PBKDF2 = re.compile(r"^\$7\$(\d+)\$([A-Za-z0-9+/]+=*)\$([A-Za-z0-9+/]+=*)$")


def b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


async def test_hash_mqtt_password_round_trip_verifies() -> None:
    password = new_opaque_token()
    encoded = hash_mqtt_password(password)
    assert verify_mqtt_password(password, encoded) is True


@pytest.mark.parametrize(
    "attempt",
    ["wrong-password", "", "S3cret-device-password ", "s3cret-device-password"],
)
async def test_verify_mqtt_password_wrong_password_false(attempt: str) -> None:
    encoded = hash_mqtt_password("S3cret-device-password")
    assert verify_mqtt_password(attempt, encoded) is False


async def test_hash_mqtt_password_same_password_salted_differently() -> None:
    password = new_opaque_token()
    first, second = hash_mqtt_password(password), hash_mqtt_password(password)
    assert first != second
    assert PasswordHash.decode(first).salt != PasswordHash.decode(second).salt
    # Both still verify: the salt travels inside the encoded hash.
    assert verify_mqtt_password(password, first)
    assert verify_mqtt_password(password, second)


async def test_hash_mqtt_password_format_is_mosquitto_pbkdf2() -> None:
    password = "broker-check-me"
    encoded = hash_mqtt_password(password)
    match = MOSQUITTO_PBKDF2.match(encoded)
    assert match is not None, encoded
    iterations, salt_b64, digest_b64 = match.groups()
    salt, digest = b64(salt_b64), b64(digest_b64)
    assert int(iterations) >= 1
    assert len(salt) == 12  # mosquitto_passwd's salt size
    assert len(digest) == hashlib.sha512().digest_size
    # What Mosquitto computes to check a password: PBKDF2-HMAC-SHA512 over the raw salt.
    expected = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(iterations))
    assert digest == expected
    assert "broker-check-me" not in encoded


async def test_decode_password_hash_round_trips_fields() -> None:
    original = PasswordHash(iterations=101, salt=b"0123456789ab", digest=b"\x00" * 64)
    encoded = original.encode()
    assert encoded.startswith("$7$101$")
    assert PasswordHash.decode(encoded) == original


async def test_verify_mqtt_password_accepts_mosquitto_generated_style_hash() -> None:
    # A hash built the way mosquitto_passwd builds it (101 iterations), not by our code.
    salt = b"saltsaltsalt"
    digest = hashlib.pbkdf2_hmac("sha512", b"from-mosquitto", salt, 101)
    encoded = f"$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    assert verify_mqtt_password("from-mosquitto", encoded) is True
    assert verify_mqtt_password("from-mosquitt0", encoded) is False


@pytest.mark.parametrize(
    "encoded",
    [
        # sha512-crypt, Mosquitto's older "$6$" scheme, given the same field count.
        "$6$101$c2FsdHNhbHRzYWx0$" + base64.b64encode(b"\x01" * 64).decode(),
        "$pbkdf2-sha512$101$c2FsdHNhbHRzYWx0$" + base64.b64encode(b"\x01" * 64).decode(),
    ],
)
async def test_decode_password_hash_other_scheme_rejected(encoded: str) -> None:
    with pytest.raises(ValueError, match="scheme"):
        PasswordHash.decode(encoded)
    with pytest.raises(ValueError, match="scheme"):
        verify_mqtt_password("anything", encoded)


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "plaintext-password",
        "$6$c2FsdA==$aGFzaA==",  # Mosquitto's "$6$" has no iterations field
        "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g",
        "$7$many$c2FsdA==$aGFzaA==",
        "$7$101$not base64!$aGFzaA==",
    ],
)
async def test_decode_password_hash_malformed_rejected(encoded: str) -> None:
    with pytest.raises(ValueError):  # binascii.Error is a ValueError too
        PasswordHash.decode(encoded)
