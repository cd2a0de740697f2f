"""Fixtures for alert tests: a worker tuned for alerts, a publisher, scripted telemetry."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt
import pytest
from beanie import PydanticObjectId
from pydantic import SecretStr
from redis.asyncio import Redis

from core.settings import Settings
from ingest.worker import IngestWorker
from models.alerts import Alert
from models.readings import Reading
from tests.brokers import ManagedBroker
from tests.integration.ingest.conftest import (
    IngestIdentities,
    provision_identities,
    publisher_on,
    start_worker,
    stop_worker,
)

T0 = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)


async def eventually[T](
    check: Callable[[], Awaitable[T]], *, timeout: float = 20.0, what: str = "condition"
) -> T:
    """Poll `check` until it returns a truthy value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture(scope="session")
async def alert_identities(managed_broker: ManagedBroker) -> IngestIdentities:
    """A worker identity and an any-device publisher of this package's own (the ingest
    tests provision theirs under other names)."""
    return await provision_identities(managed_broker, prefix=f"alerts-{uuid.uuid4().hex[:8]}")


def alert_worker_settings(
    settings: Settings,
    broker: ManagedBroker,
    identities: IngestIdentities,
    *,
    group: str | None = None,
    **overrides: Any,
) -> Settings:
    """A worker of its own share group, with quick status flushes and no-data checks."""
    return settings.model_copy(
        update={
            "mqtt_host": broker.host,
            "mqtt_port": broker.port,
            "mqtt_username": identities.worker.username,
            "mqtt_password": SecretStr(identities.worker.password),
            "ingest_client_id": f"alerts-test-{uuid.uuid4().hex[:8]}",
            "ingest_share_group": group or f"alerts-{uuid.uuid4().hex[:8]}",
            "ingest_batch_delay_ms": 5,
            "ingest_status_flush_seconds": 0.2,
            "ingest_device_cache_seconds": 0.5,
            "alert_no_data_check_seconds": 0.2,
            "webhook_retry_base_seconds": 0.05,
            "webhook_allow_private_networks": True,
            **overrides,
        }
    )


@pytest.fixture
def alert_settings(
    settings: Settings, managed_broker: ManagedBroker, alert_identities: IngestIdentities
) -> Settings:
    return alert_worker_settings(settings, managed_broker, alert_identities)


async def start_alert_worker(
    settings: Settings, redis: Redis, **overrides: object
) -> tuple[IngestWorker, asyncio.Task[None]]:
    """A worker on `settings` with `overrides`, returned once its alert rules are loaded."""
    running, task = await start_worker(settings.model_copy(update=overrides), redis)
    try:
        await asyncio.wait_for(running.alerts.loaded.wait(), 10)
    except BaseException:
        await stop_worker(task)
        raise
    return running, task


@pytest.fixture
async def worker(alert_settings: Settings, redis: Redis) -> AsyncIterator[IngestWorker]:
    running, task = await start_alert_worker(alert_settings, redis)
    try:
        yield running
    finally:
        await stop_worker(task)


@pytest.fixture
async def publisher(
    managed_broker: ManagedBroker, alert_identities: IngestIdentities
) -> AsyncIterator[aiomqtt.Client]:
    async with publisher_on(managed_broker, alert_identities) as client:
        yield client


async def rule_applied(worker: IngestWorker, device_id: str, rule_id: str) -> None:
    """Wait until the worker evaluates `rule_id` (its change notice went through Redis)."""
    await eventually(
        lambda: _true(rule_id in worker.alerts.rule_ids(device_id)),
        what=f"rule {rule_id} applied by the worker",
    )


async def rule_dropped(worker: IngestWorker, device_id: str, rule_id: str) -> None:
    await eventually(
        lambda: _true(rule_id not in worker.alerts.rule_ids(device_id)),
        what=f"rule {rule_id} dropped by the worker",
    )


async def _true(value: bool) -> bool:
    return value


async def send(
    publisher: aiomqtt.Client,
    device_id: str,
    metric: str,
    values: Sequence[float],
    *,
    start: datetime = T0,
    step: float = 1.0,
    offsets: Sequence[float] | None = None,
) -> list[datetime]:
    """Publish one message per value, `step` seconds of reading time apart (or at
    `offsets` from `start`); returns the readings' timestamps."""
    times = [
        start + timedelta(seconds=offsets[i] if offsets is not None else i * step)
        for i in range(len(values))
    ]
    for at, value in zip(times, values, strict=True):
        payload = {metric: value, "ts": int(at.timestamp() * 1000)}
        await publisher.publish(f"devices/{device_id}/telemetry", json.dumps(payload), qos=1)
    return times


async def settled(worker: IngestWorker, device_id: str, readings: int) -> None:
    """Wait until `readings` of the device are stored and every alert decision the worker
    made is in MongoDB (evaluation happens before storage)."""

    async def check() -> bool:
        stored = await Reading.find(Reading.device_id == PydanticObjectId(device_id)).count()
        return stored >= readings and worker.alerts.pending_work == 0

    await eventually(check, what=f"{readings} readings stored and alert work done")


async def alerts_of(device_id: str) -> list[Alert]:
    """The device's alerts, oldest first."""
    return await Alert.find(Alert.device_id == PydanticObjectId(device_id)).sort("_id").to_list()
