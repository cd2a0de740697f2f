"""ReadingStore's queue as HTTP ingest uses it: full, its age, taking a message back.

No store task runs and nothing connects: the queue alone."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from bson import ObjectId
from redis.asyncio import Redis

from ingest.stats import IngestStats
from ingest.store import PendingMessage, ReadingStore


class Receipt:
    dup = False

    def ack(self) -> None:
        raise AssertionError("nothing is stored here")


def message(readings: int) -> PendingMessage:
    device = ObjectId()
    documents = [
        {"_id": ObjectId(), "device_id": device, "timestamp": datetime.now(UTC), "values": []}
        for _ in range(readings)
    ]
    return PendingMessage(Receipt(), device, "source", documents)


async def test_withdraw_queued_message_frees_room_once() -> None:
    redis = Redis.from_url("redis://127.0.0.1:1/0")  # never used: no batch is stored
    store = ReadingStore(
        redis=redis,
        stats=IngestStats(),
        batch_size=100,
        batch_delay=0.02,
        queue_size=2,
        dedup_window=3600,
    )
    first, second = message(3), message(2)
    assert (store.full, store.oldest_wait) == (False, 0.0)
    await store.put(first)
    await store.put(second)
    assert store.full
    await asyncio.sleep(0.05)
    assert store.oldest_wait >= 0.05
    assert store.withdraw(first)
    assert not store.withdraw(first)  # gone already: never stored twice, never raised
    assert (store.full, store.depth) == (False, 1)
    # Put does not wait now: there is room again.
    async with asyncio.timeout(1):
        await store.put(message(1))
    assert store.depth == 2
    await redis.aclose()
