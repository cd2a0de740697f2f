"""A broker of the abuse suite's own, with a worker and an any-device publisher on it."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import pytest
from redis.asyncio import Redis

from core.settings import Settings
from ingest.worker import IngestWorker
from tests.brokers import ManagedBroker
from tests.integration.ingest.conftest import (
    IngestIdentities,
    provision_identities,
    publisher_on,
    settings_for_worker,
    start_worker,
    stop_worker,
)


@pytest.fixture(scope="module")
def fuzz_broker() -> Iterator[ManagedBroker]:
    with tempfile.TemporaryDirectory() as directory:
        broker = ManagedBroker(Path(directory))
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()


@pytest.fixture(scope="module")
async def fuzz_identities(fuzz_broker: ManagedBroker) -> IngestIdentities:
    return await provision_identities(fuzz_broker)


@pytest.fixture
async def fuzz_worker(
    settings: Settings, redis: Redis, fuzz_broker: ManagedBroker, fuzz_identities: IngestIdentities
) -> AsyncIterator[tuple[IngestWorker, asyncio.Task[None]]]:
    """A running worker, and its task (to tell whether it stopped)."""
    worker, task = await start_worker(
        settings_for_worker(settings, fuzz_broker, fuzz_identities), redis
    )
    try:
        yield worker, task
    finally:
        await stop_worker(task)


@pytest.fixture
async def fuzz_publisher(
    fuzz_broker: ManagedBroker, fuzz_identities: IngestIdentities
) -> AsyncIterator[aiomqtt.Client]:
    async with publisher_on(fuzz_broker, fuzz_identities) as client:
        yield client
