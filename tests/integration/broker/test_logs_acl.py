"""The broker, not the worker, stops a device from writing another device's log."""

from __future__ import annotations

from core.settings import Settings
from tests.brokers import ManagedBroker
from tests.client import Api
from tests.factories import create_device, register
from tests.integration.broker.conftest import (
    granted,
    ingest_login,
    mqtt,
    next_message,
    nothing_more,
)


async def test_publish_other_devices_logs_never_reaches_ingest(
    api: Api, settings: Settings, managed_broker: ManagedBroker
) -> None:
    a_owner, b_owner = await register(api), await register(api)
    a = await create_device(api, a_owner, name="a")
    b = await create_device(api, b_owner, name="b")
    sibling = await create_device(api, a_owner, name="sibling")
    async with (
        mqtt(managed_broker, *ingest_login(settings)) as ingest,
        mqtt(managed_broker, a.mqtt_username, a.mqtt_password) as device_a,
    ):
        # Not shared, so every log message reaches this subscriber (no other group member).
        assert granted(await ingest.subscribe("devices/+/logs", qos=1)) == [True]
        # Another tenant's device, the same owner's other device: both refused.
        for qos in (0, 1):
            for target in (b.id, sibling.id):
                await device_a.publish(f"devices/{target}/logs", b"ERROR: forged", qos=qos)
        await device_a.publish(f"devices/{a.id}/logs", b"boot ok", qos=1)
        # The forged lines went first: had the broker let one through, it would come first.
        first = await next_message(ingest)
        assert (first.topic.value, first.payload) == (f"devices/{a.id}/logs", b"boot ok")
        assert await nothing_more(ingest)
