"""Mosquitto restarted: the worker and the API reconnect by themselves. What a device sent
before the worker was back waits in the worker's restored session (a plain subscription:
Mosquitto 2.0.11 does not restore shared ones); devices are managed again."""

from __future__ import annotations

import asyncio

from beanie import PydanticObjectId

from models.readings import Reading
from tests.client import Api
from tests.contract import op
from tests.factories import create_device, register
from tests.integration.api.test_websocket import TRANSPORT_WS
from tests.integration.graph.test_subscriptions import client as ws_client
from tests.system.faults.conftest import Stack
from tests.system.faults.stack import api_healthy, device_client, eventually, publish_reading

WHILE_WORKER_AWAY = 5


async def stored_numbers(device_id: str) -> list[float]:
    readings = await Reading.find(Reading.device_id == PydanticObjectId(device_id)).to_list()
    return sorted(value.value for reading in readings for value in reading.values)


async def test_restart_broker_worker_and_api_reconnect(stack: Stack) -> None:
    async with Api(stack.url) as api:
        session = await register(api)
        first = await create_device(api, session)
        async with ws_client(stack.url, session, TRANSPORT_WS) as subscriber:
            await subscriber.subscribe("1", op("ReadingAdded"), {"deviceId": None})
            before = 0  # readings sent before the restart: until the subscription is live
            async with device_client(stack.broker, first) as mqtt:
                live = asyncio.create_task(subscriber.next_data())
                while not live.done():
                    await publish_reading(mqtt, first.id, before)
                    before += 1
                    await asyncio.wait({live}, timeout=0.2)
            assert live.result()["readingAdded"]["deviceId"] == first.id
            reconnects = await stack.metrics.value("ingest_mqtt_reconnects_total")

            stack.broker.restart()
            # At once, whether or not the worker is back: QoS 1 readings kept for its session.
            async with device_client(stack.broker, first) as mqtt:
                for number in range(before, before + WHILE_WORKER_AWAY):
                    await publish_reading(mqtt, first.id, number)

            async def worker_back() -> bool:
                return (
                    await stack.metrics.connected()
                    and await stack.metrics.value("ingest_mqtt_reconnects_total") > reconnects
                )

            await eventually(worker_back, timeout=30, what="the worker reconnects")
            await eventually(lambda: api_healthy(stack.url), timeout=30, what="the API reconnects")
            # Creating a device needs the API's broker link: the new device may log in.
            second = await create_device(api, session, name="after the restart")
            async with device_client(stack.broker, second) as mqtt:
                await publish_reading(mqtt, second.id, 100)

            expected = {first.id: list(range(before + WHILE_WORKER_AWAY)), second.id: [100]}

            async def all_stored() -> bool:
                for device_id, numbers in expected.items():
                    if await stored_numbers(device_id) != numbers:
                        return False
                return True

            try:
                await eventually(all_stored, timeout=30, what=f"readings stored once: {expected}")
            except AssertionError:
                stored = {device_id: await stored_numbers(device_id) for device_id in expected}
                raise AssertionError(f"stored {stored}, expected {expected}") from None
            # The live path is whole again: the API's subscription hears both devices.
            heard: set[str] = set()
            while second.id not in heard:
                heard.add((await subscriber.next_data())["readingAdded"]["deviceId"])
    stack.worker.assert_alive()
    stack.api.assert_alive()
