"""Rollups and latest values against the real stack: same answers as the raw aggregation
on random data (late readings, several chunks, a device deleted), redelivery counted
once, a crash between storing and rolling up repaired, latest values never moved back."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from redis.asyncio import Redis

from core.settings import Settings
from ingest import rollups as write_side
from ingest.stats import IngestStats
from ingest.store import PendingMessage, ReadingStore, insert_readings
from models.accounts import utcnow
from models.devices import Device
from models.readings import Reading, hour_key
from models.rollups import HourRollup, MinuteRollup, RollupPending
from services import rollups
from services.readings import BUCKETS, raw_buckets
from services.retention import RetentionDeleter, delete_device_data

T0 = datetime(2026, 11, 2, 22, 0, tzinfo=UTC)


async def add_device() -> ObjectId:
    device_id = ObjectId()
    await Device(
        id=device_id,
        owner_id=ObjectId(),
        name="sensor",
        type="esp32",
        mqtt_username=str(device_id),
        mqtt_password_hash="",
    ).insert()
    return device_id


def document(device_id: ObjectId, at: datetime, **values: float) -> dict[str, Any]:
    return {
        "_id": ObjectId(),
        "device_id": device_id,
        "timestamp": at,
        "values": [{"metric": m, "value": v, "unit": None} for m, v in values.items()],
        "anomaly": False,
        "source": None,
        # As the write path stores it (ingest.store.insert_readings sets it too).
        "hour": hour_key(device_id, at),
    }


async def rollup_answer(
    device_id: ObjectId, metric: str, start: datetime, end: datetime, bucket: str
) -> list[tuple[datetime, int, float, float, float]]:
    unit, bin_size, length = BUCKETS[bucket]
    found = await rollups.aggregate_buckets(
        device_id, metric, start, end, length=length, unit=unit, bin_size=bin_size
    )
    return [(at, p.count, p.min, p.max, p.sum / p.count) for at, p in found]


async def raw_answer(
    device_id: ObjectId, metric: str, start: datetime, end: datetime, bucket: str
) -> list[tuple[datetime, int, float, float, float]]:
    found = await raw_buckets(device_id, metric, start=start, end=end, bucket=bucket)
    return [(b.start, b.count, b.min, b.max, b.avg) for b in found]


def same(left: list[Any], right: list[Any]) -> bool:
    if len(left) != len(right):
        return False
    for a, b in zip(left, right, strict=True):
        if a[0] != b[0] or a[1] != b[1]:
            return False
        if not all(
            math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9)
            for x, y in zip(a[2:], b[2:], strict=True)
        ):
            return False
    return True


async def test_aggregate_rollups_match_raw_on_random_data() -> None:
    rng = random.Random(15)
    device_id, other = await add_device(), await add_device()
    span = timedelta(hours=30).total_seconds()
    documents = [
        document(
            rng.choice([device_id, device_id, other]),
            T0 + timedelta(seconds=rng.uniform(0, span)),
            temp=round(rng.uniform(-20, 40), 3),
            **({"hum": rng.uniform(0, 100)} if rng.random() < 0.5 else {}),
        )
        for _ in range(1500)
    ]
    # In time order, then late ones: a tenth of them stored after everything else.
    documents.sort(key=lambda d: d["timestamp"])
    late = [documents.pop(rng.randrange(len(documents))) for _ in range(150)]
    await insert_readings(documents, chunk_size=200)
    await insert_readings(late, chunk_size=60)
    for _ in range(12):
        start = T0 + timedelta(seconds=rng.uniform(-600, span))
        end = start + timedelta(seconds=rng.uniform(30, span))
        for bucket in ("1m", "15m", "1h", "1d"):
            for metric in ("temp", "hum"):
                expected = await raw_answer(device_id, metric, start, end, bucket)
                assert same(await rollup_answer(device_id, metric, start, end, bucket), expected)
    # Aligned ranges come from the rollups alone and still agree.
    whole = (T0, T0 + timedelta(hours=30))
    assert same(
        await rollup_answer(device_id, "temp", *whole, "1h"),
        await raw_answer(device_id, "temp", *whole, "1h"),
    )
    # Deleting a device deletes its rollups; the other device's stay right.
    await Device.get_pymongo_collection().delete_one({"_id": other})
    await delete_device_data(other)
    assert await rollup_answer(other, "temp", *whole, "1h") == []
    assert await MinuteRollup.get_pymongo_collection().count_documents({"device_id": other}) == 0
    assert await HourRollup.get_pymongo_collection().count_documents({"device_id": other}) == 0
    assert same(
        await rollup_answer(device_id, "temp", *whole, "15m"),
        await raw_answer(device_id, "temp", *whole, "15m"),
    )


class Receipt:
    def __init__(self, dup: bool) -> None:
        self.dup = dup
        self.acked = 0

    def ack(self) -> None:
        self.acked += 1


async def test_redelivered_message_counted_once(settings: Settings, redis: Redis) -> None:
    device_id = await add_device()
    store = ReadingStore(
        redis=redis,
        stats=IngestStats(),
        batch_size=100,
        batch_delay=0.01,
        queue_size=100,
        dedup_window=3600,
    )
    docs = [document(device_id, T0 + timedelta(seconds=i), temp=float(i)) for i in range(5)]

    def message(dup: bool) -> PendingMessage:
        copies = [dict(doc, _id=ObjectId(), source="m-1") for doc in docs]
        return PendingMessage(
            delivery=Receipt(dup), device_id=device_id, source="m-1", documents=copies
        )

    try:
        await store._store_until_done([message(dup=False)])
        # The broker delivers it again (DUP): stored once, rolled up once.
        await store._store_until_done([message(dup=True)])
        # The store gathers rollups between flushes; its pending records wait with them.
        assert await RollupPending.get_pymongo_collection().count_documents({}) == 1
        await store.flush_rollups()
    finally:
        if store._marker is not None:
            store._marker.close()
    assert await Reading.get_pymongo_collection().count_documents({"device_id": device_id}) == 5
    answer = await rollup_answer(device_id, "temp", T0, T0 + timedelta(hours=1), "1h")
    assert answer == [(T0, 5, 0.0, 4.0, 2.0)]
    assert await RollupPending.get_pymongo_collection().count_documents({}) == 0


async def test_crash_between_store_and_rollup_repaired() -> None:
    device_id = await add_device()
    first = [document(device_id, T0 + timedelta(minutes=i), temp=float(i)) for i in range(10)]
    await insert_readings(first, chunk_size=100)
    # A chunk stored, then the process dies before its rollups are applied.
    lost = [
        document(device_id, T0 + timedelta(minutes=i, seconds=30), temp=100.0 + i) for i in range(3)
    ]
    summary = write_side.Summary.of(lost)
    await write_side.mark(summary)
    await Reading.get_pymongo_collection().insert_many(lost)
    end = T0 + timedelta(hours=2)
    stale = await rollup_answer(device_id, "temp", T0, end, "1h")
    assert stale[0][1] == 10  # the rollups missed the chunk
    # A fresh record is left alone (its chunk may still be under way)...
    assert await rollups.repair_pending() == 0
    # ...an old one is rebuilt from the raw readings, and the record goes.
    assert await rollups.repair_pending(stale=timedelta(0)) == 1
    assert await RollupPending.get_pymongo_collection().count_documents({}) == 0
    for bucket in ("1m", "1h", "1d"):
        assert same(
            await rollup_answer(device_id, "temp", T0, end, bucket),
            await raw_answer(device_id, "temp", T0, end, bucket),
        )
    # Increments after a rebuild add on top of it.
    await insert_readings([document(device_id, T0, temp=-5.0)], chunk_size=1)
    assert same(
        await rollup_answer(device_id, "temp", T0, end, "1h"),
        await raw_answer(device_id, "temp", T0, end, "1h"),
    )


async def latest_of(device_id: ObjectId) -> dict[str, Any] | None:
    found = await Device.get_pymongo_collection().find_one({"_id": device_id})
    assert found is not None
    return found.get("latest_reading")


async def test_latest_reading_newest_late_and_deleted(settings: Settings, redis: Redis) -> None:
    device_id = await add_device()
    now = utcnow().replace(microsecond=0)
    await insert_readings(
        [document(device_id, now - timedelta(minutes=5), temp=1.0)], chunk_size=10
    )
    latest = await latest_of(device_id)
    assert latest is not None and latest["values"][0]["value"] == 1.0
    # Newer: replaces it; older (late, in the same chunk or later): does not.
    await insert_readings(
        [
            document(device_id, now - timedelta(minutes=1), temp=2.0),
            document(device_id, now - timedelta(minutes=3), temp=3.0),
        ],
        chunk_size=10,
    )
    await insert_readings([document(device_id, now - timedelta(days=2), temp=4.0)], chunk_size=10)
    latest = await latest_of(device_id)
    assert latest is not None and latest["values"][0]["value"] == 2.0
    # Retention deletes every reading of the device: no latest reading any more.
    await Device.get_pymongo_collection().update_one(
        {"_id": device_id}, {"$set": {"latest_reading.timestamp": now - timedelta(days=40)}}
    )
    deleter = RetentionDeleter(
        settings.model_copy(update={"reading_retention_days": 30, "retention_batch_pause_ms": 0}),
        redis,
    )
    await deleter.run_pass()
    assert await latest_of(device_id) is None


async def test_gathered_rollups_merge_chunks_and_late_readings() -> None:
    device_id = await add_device()
    gather = write_side.Accumulator()
    now = utcnow()
    for k in range(4):
        chunk = [
            document(device_id, T0 + timedelta(minutes=k, seconds=i), temp=float(i))
            for i in range(3)
        ]
        await insert_readings(chunk, chunk_size=10, gather=gather)
    late = [document(device_id, T0 - timedelta(hours=5), temp=-1.0)]
    await insert_readings(late, chunk_size=10, gather=gather)
    await insert_readings([document(device_id, now, temp=9.0)], chunk_size=10, gather=gather)
    # Not flushed: the rollups and the device's latest reading wait.
    assert await rollup_answer(device_id, "temp", T0, T0 + timedelta(hours=1), "1h") == []
    await gather.flush()
    assert gather.empty
    for bucket in ("1m", "1h", "1d"):
        window = (T0 - timedelta(hours=6), T0 + timedelta(hours=1))
        assert same(
            await rollup_answer(device_id, "temp", *window, bucket),
            await raw_answer(device_id, "temp", *window, bucket),
        )
    latest = await latest_of(device_id)
    assert latest is not None and latest["values"][0]["value"] == 9.0
    assert await RollupPending.get_pymongo_collection().count_documents({}) == 0


async def test_aggregate_open_edge_read_raw_before_flush() -> None:
    device_id = await add_device()
    gather = write_side.Accumulator()
    now = utcnow()
    await insert_readings(
        [document(device_id, now - timedelta(seconds=s), temp=float(s)) for s in (1, 2, 3)],
        chunk_size=10,
        gather=gather,
    )
    # The worker has not flushed yet: the last half minute comes from the raw readings.
    window = (now - timedelta(hours=2), now + timedelta(seconds=1))
    found = await rollup_answer(device_id, "temp", *window, "1h")
    assert sum(bucket[1] for bucket in found) == 3
    await gather.flush()
    assert same(
        await rollup_answer(device_id, "temp", *window, "1h"),
        await raw_answer(device_id, "temp", *window, "1h"),
    )


async def test_gathered_rollups_failing_too_long_left_to_repair() -> None:
    device_id = await add_device()
    gather = write_side.Accumulator()
    docs = [document(device_id, T0, temp=1.0)]
    await Reading.get_pymongo_collection().insert_many(docs)
    # Gathered 40 s ago (flushes kept failing): the repair may rebuild the hour from raw
    # any moment, so the flush must not add them on top.
    gather.add(
        write_side.Summary.of(docs), ObjectId.from_datetime(utcnow() - timedelta(seconds=40))
    )
    await gather.flush()
    assert gather.empty
    assert await rollup_answer(device_id, "temp", T0, T0 + timedelta(hours=1), "1h") == []
