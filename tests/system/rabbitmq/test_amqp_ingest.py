"""Ingest from RabbitMQ quorum queues (INGEST_SOURCE=amqp, ingest/amqp.py): devices
publish QoS 1 over MQTT to the private node, `python -m ingest` workers consume the
queues bound to amq.topic and store each reading once, as the MQTT path does."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import aio_pika
import aiomqtt
import aiormq
import pytest
from aio_pika.abc import AbstractIncomingMessage
from beanie import PydanticObjectId
from redis.asyncio import Redis
from yarl import URL

from core.events import ReadingEvent, owner_channel
from core.settings import Settings
from ingest.amqp import ingest_queues
from models.devices import Device, DeviceStatus
from tests.client import Api
from tests.factories import CreatedDevice, create_device, register
from tests.integration.broker.conftest import closed_by_broker, next_message
from tests.integration.live import wait_numsub
from tests.rabbitmq import RabbitNode
from tests.system.faults.stack import eventually
from tests.system.rabbitmq.conftest import (
    amqp_workers,
    assert_each_once,
    rabbit_client,
)


@asynccontextmanager
async def devices_connected(
    node: RabbitNode, devices: list[CreatedDevice]
) -> AsyncIterator[list[aiomqtt.Client]]:
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                rabbit_client(node, device.mqtt_username, device.mqtt_password)
            )
            for device in devices
        ]


async def test_amqp_worker_stores_each_reading_once_counts_bad_input_goes_live(
    api: Api, settings: Settings, rabbit_node: RabbitNode, redis: Redis, tmp_path: Path
) -> None:
    session = await register(api)
    devices = [await create_device(api, session, name=f"d{i}") for i in range(3)]
    per_device = 20
    async with (
        amqp_workers(settings, [rabbit_node], tmp_path) as [(_, metrics)],
        redis.pubsub() as live,
    ):
        await live.subscribe(owner_channel("readings", session.user_id))
        await wait_numsub(redis, owner_channel("readings", session.user_id), 1)
        async with devices_connected(rabbit_node, devices) as clients:
            for n in range(per_device):
                for device, client in zip(devices, clients, strict=True):
                    await client.publish(
                        f"devices/{device.id}/telemetry", json.dumps({"n": n}), qos=1
                    )
                if n == per_device // 2:
                    # Bad input among good: a counted drop, acknowledged, nothing else lost.
                    await clients[0].publish(
                        f"devices/{devices[0].id}/telemetry", b"{not json", qos=1
                    )
        await assert_each_once(devices, per_device)
        assert await metrics.value("ingest_messages_dropped_total", reason="bad_json") == 1
        # Every reading went live on Redis (the owner's channel), once.
        seen: Counter[tuple[str, float]] = Counter()

        async def all_live() -> bool:
            while (message := await live.get_message(timeout=0.2)) is not None:
                if message["type"] == "message":
                    event = ReadingEvent.decode(message["data"])
                    seen[(event.device_id, event.values[0][1])] += 1
            return len(seen) == len(devices) * per_device

        await eventually(all_live, timeout=10, what="every reading live")
        assert set(seen.values()) == {1}
    # Status: the devices were seen.
    for device in devices:
        document = await Device.get(PydanticObjectId(device.id))
        assert document is not None and document.status == DeviceStatus.ONLINE


async def test_worker_killed_mid_stream_the_other_stores_the_rest_once(
    api: Api, settings: Settings, rabbit_node: RabbitNode, tmp_path: Path
) -> None:
    session = await register(api)
    devices = [await create_device(api, session, name=f"d{i}") for i in range(4)]
    per_device = 60
    async with amqp_workers(settings, [rabbit_node], tmp_path, count=2) as workers:
        (doomed, doomed_metrics), (survivor, survivor_metrics) = workers
        async with devices_connected(rabbit_node, devices) as clients:
            for n in range(per_device):
                for device, client in zip(devices, clients, strict=True):
                    await client.publish(
                        f"devices/{device.id}/telemetry", json.dumps({"n": n}), qos=1
                    )
                if n == per_device // 3:
                    # Both consume (competing consumers), then one dies without a word:
                    # what it held unacknowledged goes to the other.
                    await eventually(
                        lambda: doomed_metrics.value("ingest_readings_stored_total"),
                        timeout=30,
                        what="the first worker stores some",
                    )
                    doomed.kill()
        await assert_each_once(devices, per_device)
        survivor.assert_alive()
        assert await survivor_metrics.value("ingest_readings_stored_total") > 0


async def test_cross_tenant_publish_reaches_no_queue(
    api: Api, settings: Settings, rabbit_node: RabbitNode, tmp_path: Path
) -> None:
    victim_owner = await register(api)
    victim = await create_device(api, victim_owner)
    attacker = await create_device(api, await register(api))
    async with amqp_workers(settings, [rabbit_node], tmp_path):
        async with rabbit_client(
            rabbit_node, attacker.mqtt_username, attacker.mqtt_password
        ) as client:
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                async with asyncio.timeout(5):
                    await client.publish(
                        f"devices/{victim.id}/telemetry", json.dumps({"n": 99}), qos=1
                    )
            assert await closed_by_broker(client)
        async with devices_connected(rabbit_node, [victim]) as [own]:
            await own.publish(f"devices/{victim.id}/telemetry", json.dumps({"n": 0}), qos=1)
        # The victim's own reading arrives; the attacker's never does.
        await assert_each_once([victim], 1)


async def drain(message: AbstractIncomingMessage) -> None:
    await message.ack()


async def test_devices_cannot_consume_or_declare_the_ingest_queues(
    api: Api, settings: Settings, rabbit_node: RabbitNode, tmp_path: Path
) -> None:
    device = await create_device(api, await register(api))
    # The queues exist (a worker declared them).
    async with amqp_workers(settings, [rabbit_node], tmp_path):
        pass
    url = URL.build(
        scheme="amqp",
        host=rabbit_node.host,
        port=rabbit_node.amqp_port,
        path="/",
        user=device.mqtt_username,
        password=device.mqtt_password,
    )
    for name, _ in ingest_queues():
        # A device logs in over AMQP (its credentials are valid) but may not touch them.
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
                queue = await channel.declare_queue(name, passive=True)
                await queue.consume(drain)


async def test_twin_get_answered_through_amq_topic(
    api: Api, settings: Settings, rabbit_node: RabbitNode, tmp_path: Path
) -> None:
    device = await create_device(api, await register(api))
    async with (
        amqp_workers(settings, [rabbit_node], tmp_path),
        devices_connected(rabbit_node, [device]) as [client],
    ):
        await client.subscribe(f"devices/{device.id}/twin/desired", qos=1)
        await client.publish(f"devices/{device.id}/twin/get", b"", qos=1)
        message = await next_message(client, 15)
    # The worker has no MQTT connection here: its answer went through amq.topic.
    assert message.topic.value == f"devices/{device.id}/twin/desired"
    assert isinstance(json.loads(bytes(message.payload)), dict)
