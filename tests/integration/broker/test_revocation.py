"""Rotation and deletion end a credential at once: new logins and open sessions alike."""

from __future__ import annotations

from tests.brokers import ManagedBroker
from tests.client import Api
from tests.contract import op
from tests.factories import create_device, register
from tests.integration.broker.conftest import closed_by_broker, login_refused, mqtt


async def test_rotate_device_credentials_old_password_refused_session_closed(
    api: Api, managed_broker: ManagedBroker
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    bystander = await create_device(api, session)
    async with (
        mqtt(managed_broker, device.mqtt_username, device.mqtt_password) as old_session,
        mqtt(managed_broker, bystander.mqtt_username, bystander.mqtt_password) as other,
    ):
        await old_session.subscribe(f"devices/{device.id}/ota")
        await other.subscribe(f"devices/{bystander.id}/ota")
        result = await api.execute(
            op("RotateDeviceCredentials"), {"id": device.id}, token=session.access_token
        )
        new_password = result.data["rotateDeviceCredentials"]["mqttPassword"]
        assert await closed_by_broker(old_session)
        # Only that device's sessions: another device stays connected.
        assert not await closed_by_broker(other, timeout=0.5)
    assert await login_refused(managed_broker, device.mqtt_username, device.mqtt_password)
    assert not await login_refused(managed_broker, device.mqtt_username, new_password)


async def test_delete_device_password_refused_session_closed(
    api: Api, managed_broker: ManagedBroker
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    async with mqtt(managed_broker, device.mqtt_username, device.mqtt_password) as open_session:
        await open_session.subscribe(f"devices/{device.id}/ota")
        result = await api.execute(
            op("DeleteDevice"), {"id": device.id}, token=session.access_token
        )
        assert result.data["deleteDevice"] is True
        assert await closed_by_broker(open_session)
    assert await login_refused(managed_broker, device.mqtt_username, device.mqtt_password)


async def test_create_device_after_delete_fresh_identity(
    api: Api, managed_broker: ManagedBroker
) -> None:
    session = await register(api)
    gone = await create_device(api, session)
    await api.execute(op("DeleteDevice"), {"id": gone.id}, token=session.access_token)
    fresh = await create_device(api, session)
    assert fresh.mqtt_username != gone.mqtt_username
    assert not await login_refused(managed_broker, fresh.mqtt_username, fresh.mqtt_password)
    assert await login_refused(managed_broker, fresh.mqtt_username, gone.mqtt_password)
