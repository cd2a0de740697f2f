"""Delivery guarantees: a killed worker loses nothing and stores nothing twice."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest
from beanie import PydanticObjectId
from redis.asyncio import Redis

from core.settings import Settings
from models.readings import Reading
from tests.brokers import ManagedBroker
from tests.client import Api
from tests.factories import create_device, register
from tests.integration.ingest.conftest import (
    provision_identities,
    publisher_on,
    settings_for_worker,
    start_worker,
    stop_worker,
)
from tests.net import ROOT
from tests.processes import settings_environment

MESSAGES = 2000


async def count_readings(device_id: str) -> int:
    return await Reading.find(Reading.device_id == PydanticObjectId(device_id)).count()


async def wait_for_count(device_id: str, target: int, *, timeout: float) -> int:
    async with asyncio.timeout(timeout):
        while (count := await count_readings(device_id)) < target:
            await asyncio.sleep(0.1)
    return count


async def distinct_values(device_id: str) -> int:
    numbers = await Reading.get_pymongo_collection().distinct(
        "values.value", {"device_id": PydanticObjectId(device_id)}
    )
    return len(numbers)


def spawn_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "ingest"],
            cwd=ROOT,
            env=settings_environment(settings),
            stdout=output,
            stderr=subprocess.STDOUT,
        )


async def wait_for_subscribed(log: Path, *, timeout: float) -> None:
    """Until the worker logs its connection, which it does once the broker's SUBACK is in."""
    async with asyncio.timeout(timeout):
        while "ingest.worker: connected to" not in log.read_text(errors="replace"):
            await asyncio.sleep(0.05)


async def missing_numbers(device_id: str, count: int) -> list[int]:
    numbers = await Reading.get_pymongo_collection().distinct(
        "values.value", {"device_id": PydanticObjectId(device_id)}
    )
    return sorted(set(range(count)) - {int(n) for n in numbers})


async def publish_numbered(publisher: aiomqtt.Client, device_id: str, count: int) -> None:
    for number in range(count):
        await publisher.publish(f"devices/{device_id}/telemetry", json.dumps({"n": number}), qos=1)


async def test_kill_worker_mid_stream_stores_every_message_once(
    api: Api, worker_settings: Settings, publisher: aiomqtt.Client, tmp_path: Path
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    log = tmp_path / "worker.log"
    process = spawn_worker(worker_settings, log)
    try:
        # Published before its SUBSCRIBE, a message would reach no session at all. A
        # fixed pause was too short on a loaded machine (the worker still importing).
        await wait_for_subscribed(log, timeout=60)
        sending = asyncio.create_task(publish_numbered(publisher, device.id, MESSAGES))
        await wait_for_count(device.id, MESSAGES // 4, timeout=60)
        print(f"killing at {await count_readings(device.id)} stored")
        process.send_signal(signal.SIGKILL)  # no goodbye: unacked messages stay with the broker
        process.wait(timeout=10)
        killed_at = await count_readings(device.id)
        await sending
        print(f"restarting at {await count_readings(device.id)} stored, all sent")
        process = spawn_worker(worker_settings, log)
        try:
            await wait_for_count(device.id, MESSAGES, timeout=120)
        except TimeoutError:
            async with asyncio.timeout(30):
                missing = await missing_numbers(device.id, MESSAGES)
            print(f"missing {len(missing)}: {missing[:50]}")
            print(log.read_text(errors="replace")[-5000:])
            raise
        print("all stored")
        await asyncio.sleep(1.0)  # would a duplicate still arrive?
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert killed_at < MESSAGES
    assert await count_readings(device.id) == MESSAGES
    assert await distinct_values(device.id) == MESSAGES


@pytest.fixture
def private_broker() -> Iterator[ManagedBroker]:
    with tempfile.TemporaryDirectory() as directory:
        broker = ManagedBroker(Path(directory))
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()


async def test_reconnect_worker_after_broker_restart(
    api: Api, settings: Settings, redis: Redis, private_broker: ManagedBroker
) -> None:
    identities = await provision_identities(private_broker)
    worker_settings = settings_for_worker(settings, private_broker, identities)
    session = await register(api)
    device = await create_device(api, session)
    worker, task = await start_worker(worker_settings, redis)
    try:
        async with publisher_on(private_broker, identities) as publisher:
            await publish_numbered(publisher, device.id, 10)
        await wait_for_count(device.id, 10, timeout=30)
        lost_before = worker.stats.reconnects._value.get()  # type: ignore[attr-defined]
        private_broker.restart()
        # Connected again, through a new connection (not the stale flag of the old one).
        async with asyncio.timeout(30):
            while not (
                worker.connected.is_set() and worker.stats.reconnects._value.get() > lost_before  # type: ignore[attr-defined]
            ):
                await asyncio.sleep(0.05)
        async with publisher_on(private_broker, identities) as publisher:
            for number in range(10, 20):
                await publisher.publish(
                    f"devices/{device.id}/telemetry", json.dumps({"n": number}), qos=1
                )
        assert await wait_for_count(device.id, 20, timeout=30) == 20
    finally:
        await stop_worker(task)
    assert worker.stats.reconnects._value.get() >= 1  # type: ignore[attr-defined]


async def test_share_load_two_workers_store_each_once(
    api: Api, worker_settings: Settings, redis: Redis, publisher: aiomqtt.Client
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    second_settings = worker_settings.model_copy(
        update={"ingest_client_id": worker_settings.ingest_client_id + "-b"}
    )
    first, first_task = await start_worker(worker_settings, redis)
    second, second_task = await start_worker(second_settings, redis)
    try:
        await publish_numbered(publisher, device.id, 200)
        await wait_for_count(device.id, 200, timeout=60)
        await asyncio.sleep(0.5)
    finally:
        await stop_worker(first_task)
        await stop_worker(second_task)
    assert await count_readings(device.id) == 200
    assert await distinct_values(device.id) == 200
    assert first.stats.stored_count() > 0
    assert second.stats.stored_count() > 0
    assert first.stats.stored_count() + second.stats.stored_count() == 200
