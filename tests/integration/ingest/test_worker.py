"""The worker over a real broker, Redis and the MongoDB stand-in."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import aiomqtt
import pytest
from beanie import PydanticObjectId
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from core.events import ReadingEvent, StatusEvent, device_channel
from core.settings import Settings
from ingest.worker import IngestWorker
from models.devices import Device, DeviceStatus
from models.readings import Reading
from tests.brokers import ManagedBroker
from tests.client import Api
from tests.contract import op
from tests.factories import create_device, register
from tests.integration.ingest.conftest import IngestIdentities, start_worker, stop_worker


async def eventually[T](check: Callable[[], Awaitable[T]], *, timeout: float = 10.0) -> T:
    """Poll `check` until it returns a truthy value."""
    async with asyncio.timeout(timeout):
        while True:
            result = await check()
            if result:
                return result
            await asyncio.sleep(0.05)


async def stored(device_id: str, count: int) -> list[Reading]:
    async def check() -> list[Reading]:
        readings = await Reading.find(Reading.device_id == PydanticObjectId(device_id)).to_list()
        return readings if len(readings) >= count else []

    return await eventually(check)


async def test_store_seed_format_reading(
    api: Api, worker: IngestWorker, publisher: aiomqtt.Client
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    payload = {"temperature": 87, "humidity": 99, "timestamp": "2023-03-29 13:15:56.811550"}
    await publisher.publish(f"devices/{device.id}/telemetry", json.dumps(payload), qos=1)
    [reading] = await stored(device.id, 1)
    assert reading.timestamp == datetime(2023, 3, 29, 13, 15, 56, 811000, tzinfo=UTC)
    assert [(v.metric, v.value, v.unit) for v in reading.values] == [
        ("temperature", 87.0, None),
        ("humidity", 99.0, None),
    ]
    assert worker.stats.stored_count() == 1


async def test_store_array_value_unit_and_epoch_ms_readings(
    api: Api, worker: IngestWorker, publisher: aiomqtt.Client
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    payload = [
        {"temperature": {"value": 23.5, "unit": "°C"}, "ts": 1_700_000_000_000},
        {"temperature": {"value": 24.0, "unit": "°C"}, "door": True, "ts": 1_700_000_001_000},
    ]
    await publisher.publish(f"devices/{device.id}/telemetry", json.dumps(payload), qos=1)
    readings = sorted(await stored(device.id, 2), key=lambda r: r.timestamp)
    assert [r.timestamp for r in readings] == [
        datetime.fromtimestamp(1_700_000_000, UTC),
        datetime.fromtimestamp(1_700_000_001, UTC),
    ]
    assert [(v.metric, v.value, v.unit) for v in readings[1].values] == [
        ("temperature", 24.0, "°C"),
        ("door", 1.0, None),
    ]

    async def metrics() -> list[str]:
        result = await api.execute(op("Device"), {"id": device.id}, token=session.access_token)
        return result.data["device"]["metrics"]  # type: ignore[no-any-return]

    assert await eventually(metrics) == ["door", "temperature"]


async def test_publish_live_event_before_storage(
    api: Api, worker_settings: Settings, publisher: aiomqtt.Client, redis: Redis
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    # A batch of one waits 3 s for company before it is stored: the live event must not.
    slow_batches = worker_settings.model_copy(update={"ingest_batch_delay_ms": 3000})
    running, task = await start_worker(slow_batches, redis)
    try:
        async with redis.pubsub() as pubsub:
            await pubsub.subscribe(device_channel("readings", device.id))
            await publisher.publish(f"devices/{device.id}/telemetry", '{"t": 1.5}', qos=1)
            async with asyncio.timeout(10):
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        event = ReadingEvent.decode(message["data"])
                        break
            stored_when_live = await Reading.find(
                Reading.device_id == PydanticObjectId(device.id)
            ).count()
        await stored(device.id, 1)  # and it is stored after all
    finally:
        await stop_worker(task)
    assert stored_when_live == 0
    assert running.stats.stored_count() == 1
    assert (event.device_id, event.owner_id, event.values) == (
        device.id,
        session.user_id,
        (("t", 1.5, None),),
    )


BAD_PAYLOADS: list[tuple[str, bytes]] = [
    ("bad_json", b"{not json"),
    ("bad_json", b"\xff\xfe"),
    ("too_large", b'{"t": 1, "pad": "' + b"x" * 70_000 + b'"}'),
    ("too_many_readings", json.dumps([{"t": 1}] * 1001).encode()),
    ("too_many_metrics", json.dumps({f"m{i}": i for i in range(101)}).encode()),
    ("bad_metric_name", b'{"bad name": 1}'),
    ("non_finite", b'{"t": NaN}'),
    ("non_finite", b'{"t": 1e999}'),
    ("no_metrics", b'{"note": "strings are not metrics"}'),
    ("bad_timestamp", b'{"t": 1, "timestamp": "yesterday"}'),
    ("future_timestamp", b'{"t": 1, "ts": 99999999999999}'),
    ("bad_shape", b"[1, 2, 3]"),
]


@pytest.mark.parametrize(("reason", "payload"), BAD_PAYLOADS)
async def test_drop_bad_telemetry_counted_stream_continues(
    api: Api, worker: IngestWorker, publisher: aiomqtt.Client, reason: str, payload: bytes
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    before = worker.stats.dropped_count(reason)  # type: ignore[arg-type]
    await publisher.publish(f"devices/{device.id}/telemetry", payload, qos=1)
    await publisher.publish(f"devices/{device.id}/telemetry", '{"ok": 1}', qos=1)
    [reading] = await stored(device.id, 1)
    assert [v.metric for v in reading.values] == ["ok"]
    assert worker.stats.dropped_count(reason) == before + 1  # type: ignore[arg-type]


async def test_drop_unknown_and_deleted_device_counted(
    api: Api, worker: IngestWorker, publisher: aiomqtt.Client
) -> None:
    session = await register(api)
    keep = await create_device(api, session)
    gone = await create_device(api, session)
    await api.execute(op("DeleteDevice"), {"id": gone.id}, token=session.access_token)
    await asyncio.sleep(0.6)  # past the worker's device cache
    await publisher.publish(f"devices/{gone.id}/telemetry", '{"t": 1}', qos=1)
    await publisher.publish(f"devices/{PydanticObjectId()}/telemetry", '{"t": 1}', qos=1)
    await publisher.publish("devices/not-an-id/telemetry", '{"t": 1}', qos=1)
    await publisher.publish(f"devices/{keep.id}/telemetry", '{"t": 2}', qos=1)
    await stored(keep.id, 1)
    assert worker.stats.dropped_count("unknown_device") == 2
    assert worker.stats.dropped_count("bad_topic") == 1
    assert await Reading.find(Reading.device_id == PydanticObjectId(gone.id)).count() == 0


async def test_forget_deleted_device_at_once(
    api: Api, worker_settings: Settings, redis: Redis, publisher: aiomqtt.Client
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    # A cache that would remember the device for a minute, were it not told.
    patient = worker_settings.model_copy(update={"ingest_device_cache_seconds": 60.0})
    running, task = await start_worker(patient, redis)
    try:
        await publisher.publish(f"devices/{device.id}/telemetry", '{"t": 1}', qos=1)
        await stored(device.id, 1)
        await api.execute(op("DeleteDevice"), {"id": device.id}, token=session.access_token)
        await eventually(lambda: asyncio.sleep(0, device.id not in running.directory._entries))
        await publisher.publish(f"devices/{device.id}/telemetry", '{"t": 2}', qos=1)
        await eventually(
            lambda: asyncio.sleep(0, running.stats.dropped_count("unknown_device") == 1)
        )
    finally:
        await stop_worker(task)
    assert await Reading.find(Reading.device_id == PydanticObjectId(device.id)).count() == 0


async def test_never_store_or_log_payload_secrets(
    api: Api, worker: IngestWorker, publisher: aiomqtt.Client, caplog: pytest.LogCaptureFixture
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    secret = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.c2ln-very-secret"
    caplog.set_level(logging.DEBUG)
    await publisher.publish(
        f"devices/{device.id}/telemetry",
        json.dumps({"t": 1, "jwt_token": secret, "device_id": device.id}),
        qos=1,
    )
    await publisher.publish(
        f"devices/{device.id}/telemetry", json.dumps({"bad name": 1, "jwt_token": secret}), qos=1
    )
    [reading] = await stored(device.id, 1)
    raw = await Reading.get_pymongo_collection().find_one({"_id": reading.id})
    assert secret not in str(raw)
    assert secret not in caplog.text
    assert worker.stats.dropped_count("bad_metric_name") == 1


async def test_set_status_from_messages_and_last_will(
    api: Api, worker: IngestWorker, publisher: aiomqtt.Client, redis: Redis
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    topic = f"devices/{device.id}/status"
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(device_channel("status", device.id))
        await publisher.publish(topic, '{"online": true}', qos=1)
        online = await next_status(pubsub)
        await publisher.publish(topic, "offline", qos=1)
        offline = await next_status(pubsub)
    assert (online.status, offline.status) == ("ONLINE", "OFFLINE")
    stored_device = await Device.get(PydanticObjectId(device.id))
    assert stored_device is not None
    assert stored_device.status == DeviceStatus.OFFLINE
    assert stored_device.last_seen is not None
    await publisher.publish(topic, b"sideways", qos=1)
    await eventually(lambda: asyncio.sleep(0, worker.stats.dropped_count("bad_status") == 1))


async def test_mark_device_online_on_telemetry_then_offline_after_silence(
    api: Api, worker_settings: Settings, redis: Redis, publisher: aiomqtt.Client
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    quick = worker_settings.model_copy(update={"ingest_offline_after_seconds": 1.0})
    running, task = await start_worker(quick, redis)
    try:
        async with redis.pubsub() as pubsub:
            await pubsub.subscribe(device_channel("status", device.id))
            await publisher.publish(f"devices/{device.id}/telemetry", '{"t": 1}', qos=1)
            online = await next_status(pubsub)
            offline = await next_status(pubsub, timeout=15)
    finally:
        await stop_worker(task)
    assert (online.status, offline.status) == ("ONLINE", "OFFLINE")
    assert offline.last_seen is not None
    assert running.stats.stored_count() == 1


async def test_device_last_will_marks_offline(
    api: Api,
    worker: IngestWorker,
    managed_broker: ManagedBroker,
    ingest_identities: IngestIdentities,
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    topic = f"devices/{device.id}/status"
    # A real client process with a Last Will, killed without a DISCONNECT.
    identity = ingest_identities.publisher
    process = await asyncio.create_subprocess_exec(
        "mosquitto_pub",
        "-h",
        managed_broker.host,
        "-p",
        str(managed_broker.port),
        "-u",
        identity.username,
        "-P",
        identity.password,
        "-q",
        "1",
        "-t",
        topic,
        "-l",
        "--will-topic",
        topic,
        "--will-payload",
        "offline",
        "--will-qos",
        "1",
        stdin=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None
    process.stdin.write(b"online\n")
    await process.stdin.drain()

    async def status() -> DeviceStatus | None:
        found = await Device.get(PydanticObjectId(device.id))
        return found.status if found else None

    try:
        assert await eventually(lambda: _is(status, DeviceStatus.ONLINE))
    finally:
        process.kill()
        await process.wait()
    assert await eventually(lambda: _is(status, DeviceStatus.OFFLINE), timeout=15)


async def _is(check: Callable[[], Awaitable[DeviceStatus | None]], expected: DeviceStatus) -> bool:
    return await check() == expected


async def next_status(pubsub: PubSub, *, timeout: float = 10.0) -> StatusEvent:
    async with asyncio.timeout(timeout):
        async for message in pubsub.listen():
            if message["type"] == "message":
                return StatusEvent.decode(message["data"])
    raise AssertionError("unreachable")


async def test_store_redelivered_copy_in_same_batch_once(
    api: Api, worker_settings: Settings, redis: Redis
) -> None:
    """A copy redelivered (DUP) while the first still waits for its batch is stored once."""
    from bson import ObjectId

    from ingest.mqtt import Delivery
    from ingest.stats import IngestStats
    from ingest.store import PendingMessage, ReadingStore, source_key

    class Acks:
        def __init__(self) -> None:
            self.mids: list[int] = []

        def ack(self, mid: int) -> None:
            self.mids.append(mid)

    session = await register(api)
    device = await create_device(api, session)
    stats = IngestStats()
    store = ReadingStore(
        redis=redis, stats=stats, batch_size=100, batch_delay=0.05, queue_size=10, dedup_window=3600
    )
    old, new = Acks(), Acks()
    first = Delivery(old, "t", b'{"t": 1}', 1, 7, False, False)  # type: ignore[arg-type]
    copy = Delivery(new, "t", b'{"t": 1}', 1, 7, False, True)  # type: ignore[arg-type]
    for delivery in (first, copy):
        document = {
            "_id": ObjectId(),
            "device_id": ObjectId(device.id),
            "timestamp": datetime.now(UTC),
            "values": [{"metric": "t", "value": 1.0, "unit": None}],
            "anomaly": False,
            "source": source_key("worker", delivery),
        }
        await store.put(
            PendingMessage(delivery, ObjectId(device.id), document["source"], [document])
        )
    task = asyncio.create_task(store.run())
    try:
        await eventually(lambda: asyncio.sleep(0, new.mids == [7]))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert old.mids == [7]  # acknowledged too (a no-op on a closed connection)
    assert await Reading.find(Reading.device_id == PydanticObjectId(device.id)).count() == 1
    assert stats.stored_count() == 1
    assert stats.registry.get_sample_value("ingest_messages_duplicate_total") == 1
