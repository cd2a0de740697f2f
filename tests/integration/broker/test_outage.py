"""Broker down: device mutations fail cleanly with a clear error, /health says so."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from beanie import PydanticObjectId

from core.settings import Settings
from models.devices import Device
from tests.brokers import ManagedBroker
from tests.client import Api, Result
from tests.contract import op
from tests.factories import create_device, register
from tests.integration.broker.conftest import login_refused
from tests.processes import api_process


@pytest.fixture
async def private_api(settings: Settings, private_broker: ManagedBroker) -> AsyncIterator[Api]:
    """`python -m api` administering the test's private broker."""
    overrides = {
        "MQTT_PORT": str(private_broker.port),
        "MQTT_PASSWORD": private_broker.admin_password,
    }
    async with api_process(settings, **overrides) as url, Api(url) as client:
        yield client


async def mqtt_health(api: Api, expected: str) -> None:
    for _ in range(100):
        response = await api.http.get("/health")
        if response.json()["services"]["mqtt"] == expected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"/health never reported mqtt {expected!r}")


def assert_unavailable(result: Result, outcome: str) -> None:
    # INTERNAL, yet not masked: the caller learns what happened and that nothing changed.
    assert result.code == "INTERNAL", result.errors
    assert result.message == f"The MQTT broker is unavailable; {outcome}. Try again."


async def test_create_device_broker_down_nothing_created(
    private_api: Api, private_broker: ManagedBroker
) -> None:
    session = await register(private_api)
    private_broker.stop()
    await mqtt_health(private_api, "down")
    result = await private_api.execute(
        op("CreateDevice"), {"name": "s", "type": "esp32"}, token=session.access_token
    )
    assert_unavailable(result, "the device was not created")
    assert result.body.get("data") is None
    assert await Device.find_all().count() == 0
    # Back up: the API reconnects by itself and the same call succeeds.
    private_broker.start()
    await mqtt_health(private_api, "ok")
    device = await create_device(private_api, session)
    assert await Device.find_all().count() == 1
    assert not await login_refused(private_broker, device.mqtt_username, device.mqtt_password)


async def test_rotate_device_credentials_broker_down_nothing_changed(
    private_api: Api, private_broker: ManagedBroker
) -> None:
    session = await register(private_api)
    device = await create_device(private_api, session)
    before = await Device.get(PydanticObjectId(device.id))
    private_broker.stop()
    await mqtt_health(private_api, "down")
    result = await private_api.execute(
        op("RotateDeviceCredentials"), {"id": device.id}, token=session.access_token
    )
    assert_unavailable(result, "the credentials were not changed")
    after = await Device.get(PydanticObjectId(device.id))
    assert before is not None and after is not None
    assert after.model_dump() == before.model_dump()
    private_broker.start()
    await mqtt_health(private_api, "ok")
    assert not await login_refused(private_broker, device.mqtt_username, device.mqtt_password)


async def test_delete_device_broker_down_nothing_deleted(
    private_api: Api, private_broker: ManagedBroker
) -> None:
    session = await register(private_api)
    device = await create_device(private_api, session)
    private_broker.stop()
    await mqtt_health(private_api, "down")
    result = await private_api.execute(
        op("DeleteDevice"), {"id": device.id}, token=session.access_token
    )
    assert_unavailable(result, "the device was not deleted")
    assert await Device.get(PydanticObjectId(device.id)) is not None
    private_broker.start()
    await mqtt_health(private_api, "ok")
    assert not await login_refused(private_broker, device.mqtt_username, device.mqtt_password)


async def test_report_health_mqtt_follows_admin_connection(
    private_api: Api, private_broker: ManagedBroker
) -> None:
    await mqtt_health(private_api, "ok")
    private_broker.stop()
    await mqtt_health(private_api, "down")
    response = await private_api.http.get("/health")
    assert response.status_code == 503
    private_broker.start()
    await mqtt_health(private_api, "ok")
    assert (await private_api.http.get("/health")).status_code == 200
