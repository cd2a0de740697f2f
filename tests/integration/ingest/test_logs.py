"""Device log lines through the real broker, worker, Redis and database (ingest/logs.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import uuid
from datetime import UTC, datetime, timedelta

import aiomqtt
import pytest
from beanie import PydanticObjectId
from bson import ObjectId
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from core.events import LogEvent, device_channel
from core.settings import Settings
from ingest.logs import LogStore, PendingLog
from ingest.mqtt import Delivery
from ingest.stats import IngestStats
from ingest.store import source_key
from ingest.worker import IngestWorker
from live.publisher import LivePublisher
from models.device_logs import RETENTION_INDEX, DeviceLog, LogLevel, apply_retention
from models.devices import Device, DeviceStatus
from tests.brokers import ManagedBroker
from tests.client import Api
from tests.contract import op
from tests.factories import create_device, register
from tests.integration.api.test_websocket import LEGACY_WS, TRANSPORT_WS
from tests.integration.graph.test_subscriptions import client
from tests.integration.ingest.conftest import start_worker, stop_worker
from tests.integration.ingest.test_worker import eventually
from tests.integration.live import wait_numsub
from tests.net import ROOT

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkZXZpY2UifQ.c2lnbmF0dXJlLXZlcnktc2VjcmV0"


async def lines(device_id: str, count: int | None = None) -> list[DeviceLog]:
    """The device's stored lines, oldest first; with `count`, once that many are there."""

    async def check() -> list[DeviceLog]:
        found = (
            await DeviceLog.find(DeviceLog.device_id == PydanticObjectId(device_id))
            .sort("timestamp", "_id")
            .to_list()
        )
        return found if count is None or len(found) >= count else []

    return await check() if count is None else await eventually(check)


async def next_log_event(pubsub: PubSub, *, timeout: float = 10.0) -> LogEvent:
    async with asyncio.timeout(timeout):
        async for message in pubsub.listen():
            if message["type"] == "message":
                return LogEvent.decode(message["data"])
    raise AssertionError("unreachable")


async def test_store_device_logs_text_and_json_qos0_and_1(
    api: Api, worker: IngestWorker, publisher: aiomqtt.Client
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    topic = f"devices/{device.id}/logs"
    await publisher.publish(topic, b"boot ok", qos=1)
    await publisher.publish(topic, b"[warn] battery low", qos=0)
    # Its own time, an hour ago (within the retention: an older one would expire at once).
    hour_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    payload = {"level": "error", "msg": "sensor 3 lost", "ts": int(hour_ago.timestamp() * 1000)}
    await publisher.publish(topic, json.dumps(payload), qos=1)
    stored = await lines(device.id, 3)
    assert [(line.level, line.message) for line in stored] == [
        (LogLevel.ERROR, "sensor 3 lost"),
        (LogLevel.INFO, "boot ok"),
        (LogLevel.WARNING, "battery low"),
    ]
    assert stored[0].timestamp == hour_ago
    assert worker.stats.sample("ingest_log_lines_stored_total") == 3
    assert worker.stats.sample("ingest_messages_received_total", {"kind": "logs"}) == 3
    assert worker.stats.stored_count() == 0  # readings: none
    # Traffic: the device is online.
    device_now = await Device.get(PydanticObjectId(device.id))
    assert device_now is not None and device_now.status == DeviceStatus.ONLINE


@pytest.mark.parametrize(
    ("reason", "payload"),
    [
        ("too_large", b"x" * (16 * 1024 + 1)),
        ("bad_utf8", b"boot \xff\xfe ok"),
        ("empty_log", b""),
        ("empty_log", b"  \n"),
        ("bad_timestamp", b'{"message": "x", "timestamp": "yesterday"}'),
        ("future_timestamp", b'{"message": "x", "ts": 99999999999999}'),
    ],
)
async def test_drop_bad_log_counted_stream_continues(
    api: Api, worker: IngestWorker, publisher: aiomqtt.Client, reason: str, payload: bytes
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    topic = f"devices/{device.id}/logs"
    await publisher.publish(topic, payload, qos=1)
    await publisher.publish(topic, b"still here", qos=1)
    [line] = await lines(device.id, 1)
    assert line.message == "still here"
    assert worker.stats.dropped_count(reason) == 1
    assert await DeviceLog.find(DeviceLog.device_id == PydanticObjectId(device.id)).count() == 1


async def test_accept_log_of_16_kib(
    api: Api, worker: IngestWorker, publisher: aiomqtt.Client
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    await publisher.publish(f"devices/{device.id}/logs", "é" * (8 * 1024), qos=1)
    [line] = await lines(device.id, 1)
    assert line.message == "é" * (8 * 1024)


async def test_publish_log_event_once_stored(
    api: Api, worker_settings: Settings, publisher: aiomqtt.Client, redis: Redis
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    # A batch of one waits 1 s for company before it is stored: the event waits with it.
    slow_batches = worker_settings.model_copy(update={"ingest_batch_delay_ms": 1000})
    running, task = await start_worker(slow_batches, redis)
    try:
        async with redis.pubsub() as pubsub:
            await pubsub.subscribe(device_channel("logs", device.id))
            await publisher.publish(f"devices/{device.id}/logs", b"ERROR: disk full", qos=1)
            event = await next_log_event(pubsub)
            stored_when_live = await lines(device.id)
    finally:
        await stop_worker(task)
    assert [line.message for line in stored_when_live] == ["disk full"]
    assert event == LogEvent(
        device.id, session.user_id, stored_when_live[0].timestamp, "ERROR", "disk full"
    )
    assert running.stats.sample("ingest_log_lines_stored_total") == 1


async def test_never_store_or_log_secrets_of_log_payloads(
    api: Api, worker: IngestWorker, publisher: aiomqtt.Client, caplog: pytest.LogCaptureFixture
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    caplog.set_level(logging.DEBUG)
    topic = f"devices/{device.id}/logs"
    await publisher.publish(topic, json.dumps({"message": "connected", "jwt_token": JWT}), qos=1)
    await publisher.publish(topic, f"auth with token={JWT}", qos=1)
    await publisher.publish(topic, json.dumps({"rssi": -70, "password": "hunter2-secret"}), qos=1)
    await publisher.publish(topic, JWT.encode() + b"\xff", qos=1)  # dropped: not UTF-8
    await lines(device.id, 3)
    raw = await DeviceLog.get_pymongo_collection().find({}).to_list()
    assert JWT not in str(raw) and "hunter2-secret" not in str(raw)
    assert sorted(doc["message"] for doc in raw) == [
        "auth with token=***",
        "connected",
        '{"rssi":-70,"password":"***"}',
    ]
    await eventually(lambda: asyncio.sleep(0, worker.stats.dropped_count("bad_utf8") == 1))
    assert JWT not in caplog.text and "hunter2-secret" not in caplog.text


async def test_drop_retained_log_replayed_on_subscribe(
    api: Api,
    worker: IngestWorker,
    worker_settings: Settings,
    publisher: aiomqtt.Client,
    redis: Redis,
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    topic = f"devices/{device.id}/logs"
    await publisher.publish(topic, b"kept once", qos=1, retain=True)
    try:
        await lines(device.id, 1)
        # A second worker (a session of its own) subscribes: the broker replays the line.
        update = {
            "ingest_client_id": f"ingest-test-{uuid.uuid4().hex[:8]}",
            "ingest_share_group": f"replay-{uuid.uuid4().hex[:8]}",
        }
        second, task = await start_worker(worker_settings.model_copy(update=update), redis)
        try:
            await eventually(
                lambda: asyncio.sleep(0, second.stats.dropped_count("log_retained") == 1)
            )
        finally:
            await stop_worker(task)
    finally:
        await publisher.publish(topic, b"", qos=1, retain=True)  # clear it
    assert [line.message for line in await lines(device.id)] == ["kept once"]


async def test_limit_device_log_flood_with_its_token_bucket(
    api: Api, worker_settings: Settings, publisher: aiomqtt.Client, redis: Redis
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    limited = worker_settings.model_copy(
        update={"ingest_device_rate_per_second": 0.5, "ingest_device_burst": 3}
    )
    running, task = await start_worker(limited, redis)
    try:
        for number in range(10):
            await publisher.publish(f"devices/{device.id}/logs", f"line {number}", qos=1)

        async def all_handled() -> list[DeviceLog]:
            stored = await lines(device.id)
            handled = len(stored) + running.stats.dropped_count("rate_limited")
            return stored if handled == 10 else []

        stored = await eventually(all_handled)
    finally:
        await stop_worker(task)
    assert len(stored) in (3, 4)  # the burst, and a token earned meanwhile at most
    assert [line.message for line in stored][:3] == ["line 0", "line 1", "line 2"]


class Acks:
    def __init__(self) -> None:
        self.mids: list[int] = []

    def ack(self, mid: int) -> None:
        self.mids.append(mid)


def pending(device_id: str, owner_id: str, delivery: Delivery) -> PendingLog:
    at = datetime.now(UTC).replace(microsecond=0)
    source = source_key("worker", delivery)
    document = {
        "_id": ObjectId(),
        "device_id": ObjectId(device_id),
        "timestamp": at,
        "level": "INFO",
        "message": "boot ok",
        "source": source,
    }
    event = LogEvent(device_id, owner_id, at, "INFO", "boot ok").encode()
    return PendingLog(delivery, ObjectId(device_id), source, [document], owner_id, event)


async def test_store_redelivered_log_once_published_once(
    api: Api, settings: Settings, redis: Redis
) -> None:
    """A DUP copy redelivered after the first was stored (a worker that lost its
    connection before its PUBACK) is recognised by its mark and source: not stored, not
    shown again, acknowledged."""
    session = await register(api)
    device = await create_device(api, session)
    stats = IngestStats()
    live = LivePublisher(redis, settings.redis_url, stats)
    store = LogStore(
        live=live,
        redis=redis,
        stats=stats,
        batch_size=100,
        batch_delay=0.01,
        queue_size=10,
        dedup_window=3600,
    )
    old, new = Acks(), Acks()
    first = Delivery(old, "t", b"boot ok", 1, 9, False, False)  # type: ignore[arg-type]
    copy = Delivery(new, "t", b"boot ok", 1, 9, False, True)  # type: ignore[arg-type]
    tasks = [asyncio.create_task(store.run()), asyncio.create_task(live.run())]
    try:
        async with redis.pubsub() as pubsub:
            await pubsub.subscribe(device_channel("logs", device.id))
            await store.put(pending(device.id, session.user_id, first))
            await eventually(lambda: asyncio.sleep(0, old.mids == [9]))
            event = await next_log_event(pubsub)
            await store.put(pending(device.id, session.user_id, copy))
            await eventually(lambda: asyncio.sleep(0, new.mids == [9]))
            with pytest.raises(TimeoutError):  # no second event
                await next_log_event(pubsub, timeout=0.5)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert (event.device_id, event.message) == (device.id, "boot ok")
    assert len(await lines(device.id)) == 1
    assert stats.sample("ingest_log_lines_stored_total") == 1
    assert stats.sample("ingest_messages_duplicate_total") == 1
    assert stats.stored_count() == 0  # the readings' counter is not the logs'


async def test_apply_retention_ttl_index_then_change_it(settings: Settings) -> None:
    collection = DeviceLog.get_pymongo_collection()
    index = (await collection.index_information())[RETENTION_INDEX]
    days = settings.device_log_retention_days
    assert (index["key"], index["expireAfterSeconds"]) == ([("timestamp", 1)], days * 86400)
    device_id = PydanticObjectId()
    now = datetime.now(UTC)
    await DeviceLog.insert_many(
        [
            DeviceLog(device_id=device_id, timestamp=at, level=LogLevel.INFO, message=message)
            for at, message in ((now - timedelta(days=3), "old"), (now, "new"))
        ]
    )
    try:
        await apply_retention(2)
        index = (await collection.index_information())[RETENTION_INDEX]
        assert index["expireAfterSeconds"] == 2 * 86400

        async def only_new() -> bool:
            found = await DeviceLog.find(DeviceLog.device_id == device_id).to_list()
            return [line.message for line in found] == ["new"]

        # The stand-in expires at once; MongoDB's TTL monitor runs every 60 s.
        await eventually(only_new, timeout=150)
    finally:
        await apply_retention(days)
    index = (await collection.index_information())[RETENTION_INDEX]
    assert index["expireAfterSeconds"] == days * 86400


async def test_deliver_device_log_live_on_both_protocols_then_query(
    api: Api, api_server: str, redis: Redis, worker: IngestWorker, managed_broker: ManagedBroker
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    variables = {"deviceId": device.id}
    async with (
        client(api_server, session, TRANSPORT_WS) as modern,
        client(api_server, session, LEGACY_WS) as legacy,
    ):
        await modern.subscribe("1", op("DeviceLogAdded"), variables)
        await legacy.subscribe("1", op("DeviceLogAdded"), variables)
        await wait_numsub(redis, device_channel("logs", device.id), 1)
        async with aiomqtt.Client(
            managed_broker.host,
            managed_broker.port,
            username=device.mqtt_username,
            password=device.mqtt_password,
            identifier=device.id,
        ) as as_device:
            await as_device.publish(f"devices/{device.id}/logs", b"boot ok", qos=0)
            await as_device.publish(f"devices/{device.id}/logs", b"E (12) wifi: lost", qos=1)
        for subscriber in (modern, legacy):
            first = (await subscriber.next_data("1"))["deviceLogAdded"]
            second = (await subscriber.next_data("1"))["deviceLogAdded"]
            assert (first["level"], first["message"]) == ("INFO", "boot ok")
            assert (second["level"], second["message"]) == ("ERROR", "(12) wifi: lost")
    result = await api.execute(op("DeviceLogs"), variables, token=session.access_token)
    nodes = [edge["node"] for edge in result.data["deviceLogs"]["edges"]]
    assert [(n["level"], n["message"]) for n in nodes] == [
        ("ERROR", "(12) wifi: lost"),
        ("INFO", "boot ok"),
    ]
    assert nodes[1]["timestamp"] == first["timestamp"]


async def test_simulate_device_publishes_log_lines(
    api: Api,
    api_server: str,
    worker: IngestWorker,
    managed_broker: ManagedBroker,
    publisher: aiomqtt.Client,
) -> None:
    # One device, a reading every 0.1 s for 3 s: its boot line and one after 20 readings.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulator",
        *("--devices", "1", "--rate", "10", "--duration", "3", "--api", api_server),
        *("--mqtt-host", managed_broker.host, "--mqtt-port", str(managed_broker.port)),
        *("--email", "sim-logs@example.com", "--password", "simulator-password"),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, output.decode()
    login = await api.execute(
        op("Login"), {"email": "sim-logs@example.com", "password": "simulator-password"}
    )
    token = login.data["login"]["accessToken"]
    [edge] = (await api.execute(op("Devices"), {"first": 10}, token=token)).data["devices"]["edges"]
    device_id = edge["node"]["id"]
    try:
        stored = await lines(device_id, 2)
    finally:  # the simulator's retained status would greet later tests' workers
        await publisher.publish(f"devices/{device_id}/status", b"", qos=1, retain=True)
    assert stored[0].message == "boot ok: sim-0"
    assert stored[1].level is LogLevel.INFO
    assert stored[1].message.startswith("20 readings sent, battery ")
