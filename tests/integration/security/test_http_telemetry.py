"""Attacks on POST /devices/{id}/telemetry: nothing is ever stored for a device the
token does not name, and a revoked, forged or expired token stores nothing at all."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import jwt

from core.settings import Settings
from tests.client import Api
from tests.contract import op
from tests.factories import create_device, register
from tests.integration.api.test_http_telemetry import post, stored


async def test_refuse_token_of_other_tenants_device_404_nothing_stored(
    api: Api, api_server: str
) -> None:
    attacker = await create_device(api, await register(api))
    victim = await create_device(api, await register(api))
    response = await post(api_server, victim.id, {"temp": 99}, token=attacker.token)
    assert (response.status_code, response.json()) == (404, {"error": "Device not found."})
    assert await stored(victim.id) == 0
    assert await stored(attacker.id) == 0


async def test_refuse_token_of_same_owners_other_device_404(api: Api, api_server: str) -> None:
    owner = await register(api)
    first, second = await create_device(api, owner), await create_device(api, owner)
    response = await post(api_server, second.id, {"temp": 1}, token=first.token)
    assert response.status_code == 404
    assert await stored(second.id) == 0


async def test_refuse_unknown_or_malformed_path_device_404_as_foreign(
    api: Api, api_server: str
) -> None:
    device = await create_device(api, await register(api))
    for path_id in ("0" * 24, "not-an-object-id", device.id.upper()):
        response = await post(api_server, path_id, {"temp": 1}, token=device.token)
        assert (response.status_code, response.json()) == (404, {"error": "Device not found."})
    assert await stored(device.id) == 0


async def test_refuse_rotated_token_401_new_token_202(api: Api, api_server: str) -> None:
    owner = await register(api)
    device = await create_device(api, owner)
    assert (await post(api_server, device.id, {"v": 1}, token=device.token)).status_code == 202
    result = await api.execute(
        op("RotateDeviceCredentials"), {"id": device.id}, token=owner.access_token
    )
    fresh = result.data["rotateDeviceCredentials"]["token"]
    response = await post(api_server, device.id, {"v": 2}, token=device.token)
    assert (response.status_code, response.json()) == (401, {"error": "Device token revoked."})
    assert (await post(api_server, device.id, {"v": 3}, token=fresh)).status_code == 202
    assert await stored(device.id) == 2


async def test_refuse_deleted_devices_token_401_nothing_stored(api: Api, api_server: str) -> None:
    owner = await register(api)
    device = await create_device(api, owner)
    await api.execute(op("DeleteDevice"), {"id": device.id}, token=owner.access_token)
    response = await post(api_server, device.id, {"v": 1}, token=device.token)
    assert response.status_code == 401
    assert await stored(device.id) == 0


def _device_claims(settings: Settings, device_id: str, **changes: object) -> dict[str, object]:
    now = datetime.now(UTC)
    claims: dict[str, object] = {
        "iss": settings.jwt_issuer,
        "aud": settings.device_token_audience,
        "sub": device_id,
        "iat": now,
        "exp": now + timedelta(hours=1),
        "jti": uuid.uuid4().hex,
        "ver": 1,
    }
    claims.update(changes)
    return claims


async def test_refuse_forged_expired_or_unsigned_token_401(
    api: Api, api_server: str, settings: Settings
) -> None:
    device = await create_device(api, await register(api))
    secret = settings.jwt_secret.get_secret_value()
    forged = [
        # Signed with another key.
        jwt.encode(_device_claims(settings, device.id), "x" * 48, algorithm="HS256"),
        # Expired.
        jwt.encode(
            _device_claims(settings, device.id, exp=datetime.now(UTC) - timedelta(seconds=5)),
            secret,
            algorithm="HS256",
        ),
        # No signature at all.
        jwt.encode(_device_claims(settings, device.id), None, algorithm="none"),
        # Right key, an access token's audience.
        jwt.encode(
            _device_claims(settings, device.id, aud=settings.jwt_audience),
            secret,
            algorithm="HS256",
        ),
    ]
    for token in forged:
        response = await post(api_server, device.id, {"v": 1}, token=token)
        assert response.status_code == 401, token
    assert await stored(device.id) == 0


async def test_store_other_devices_reading_despite_same_idempotency_key(
    api: Api, api_server: str
) -> None:
    """Keys are scoped to the device: one device's key cannot suppress another's readings."""
    first = await create_device(api, await register(api))
    second = await create_device(api, await register(api))
    headers = {"Idempotency-Key": "shared-key"}
    for device in (first, second):
        response = await post(api_server, device.id, {"v": 1}, token=device.token, headers=headers)
        assert response.status_code == 202
    assert (await stored(first.id), await stored(second.id)) == (1, 1)
