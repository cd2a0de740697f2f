"""SetRetention: a device's own retention, checked, and only by who may change the device."""

from __future__ import annotations

import pytest
from beanie import PydanticObjectId

from core.settings import Settings
from models.devices import Device
from tests.client import Api, Result
from tests.contract import op
from tests.factories import Session, admin_and_user, create_device, register


async def set_retention(api: Api, session: Session, device_id: str, days: int | None) -> Result:
    return await api.execute(
        op("SetRetention"), {"id": device_id, "retentionDays": days}, token=session.access_token
    )


async def stored_days(device_id: str) -> int | None:
    device = await Device.get(PydanticObjectId(device_id))
    assert device is not None
    return device.retention_days


async def test_set_retention_stores_days_and_null_restores_default(api: Api) -> None:
    _admin, user = await admin_and_user(api)
    device = await create_device(api, user)
    result = await set_retention(api, user, device.id, 7)
    assert result.data["updateDevice"] == {"id": device.id, "retentionDays": 7}
    assert await stored_days(device.id) == 7
    result = await set_retention(api, user, device.id, None)
    assert result.data["updateDevice"] == {"id": device.id, "retentionDays": None}
    assert await stored_days(device.id) is None


async def test_update_device_without_retention_keeps_it(api: Api) -> None:
    _admin, user = await admin_and_user(api)
    device = await create_device(api, user)
    await set_retention(api, user, device.id, 3)
    result = await api.execute(
        op("UpdateDevice"), {"id": device.id, "name": "renamed"}, token=user.access_token
    )
    assert result.data["updateDevice"]["name"] == "renamed"
    assert await stored_days(device.id) == 3


@pytest.mark.parametrize("days", [0, -1, 20_001, 2**31 - 1])
async def test_set_retention_out_of_range_bad_input_unchanged(
    api: Api, settings: Settings, days: int
) -> None:
    _admin, user = await admin_and_user(api)
    device = await create_device(api, user)
    await set_retention(api, user, device.id, 5)
    result = await set_retention(api, user, device.id, days)
    assert result.code == "BAD_USER_INPUT"
    assert str(settings.reading_retention_days) in result.message
    assert await stored_days(device.id) == 5


async def test_set_retention_longest_allowed_is_platform_default(
    api: Api, settings: Settings
) -> None:
    _admin, user = await admin_and_user(api)
    device = await create_device(api, user)
    result = await set_retention(api, user, device.id, settings.reading_retention_days)
    assert result.data["updateDevice"]["retentionDays"] == settings.reading_retention_days


async def test_set_retention_other_users_device_not_found_unchanged(api: Api) -> None:
    _admin, owner = await admin_and_user(api)
    attacker = await register(api)
    device = await create_device(api, owner)
    await set_retention(api, owner, device.id, 9)
    for days in (1, None):
        result = await set_retention(api, attacker, device.id, days)
        assert result.code == "NOT_FOUND"
    assert await stored_days(device.id) == 9


async def test_set_retention_without_token_unauthenticated(api: Api) -> None:
    _admin, user = await admin_and_user(api)
    device = await create_device(api, user)
    result = await api.execute(op("SetRetention"), {"id": device.id, "retentionDays": 2})
    assert result.code == "UNAUTHENTICATED"
    assert await stored_days(device.id) is None
