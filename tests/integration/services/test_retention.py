"""The retention deleter against the real stack: what it deletes, what it keeps, a pass
cut short and resumed, one pass at a time across processes, the TTL where there is one."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from bson import ObjectId
from redis.asyncio import Redis

from core.settings import Settings
from models.accounts import utcnow
from models.devices import Device
from models.readings import Reading, hour_key
from services.retention import LEASE_KEY, RetentionDeleter, ensure_collection_ttl


def retention_settings(settings: Settings, **changes: Any) -> Settings:
    base = {
        "reading_retention_days": 10,
        "retention_batch_size": 50,
        "retention_batch_pause_ms": 0,
    }
    return settings.model_copy(update=base | changes)


async def add_device(retention_days: int | None = None) -> ObjectId:
    device_id = ObjectId()
    device = Device(
        id=device_id,
        owner_id=ObjectId(),
        name="sensor",
        type="esp32",
        mqtt_username=str(device_id),
        mqtt_password_hash="",
        retention_days=retention_days,
    )
    await device.insert()
    return device_id


async def add_readings(device_id: ObjectId, ages_days: list[float]) -> None:
    now = utcnow()
    await Reading.get_pymongo_collection().insert_many(
        [
            {
                "_id": ObjectId(),
                "device_id": device_id,
                "timestamp": now - timedelta(days=age),
                "values": [{"metric": "t", "value": float(age), "unit": None}],
                "hour": hour_key(device_id, now - timedelta(days=age)),
            }
            for age in ages_days
        ]
    )


async def ages(device_id: ObjectId) -> list[float]:
    docs = Reading.get_pymongo_collection().find({"device_id": device_id}, {"values": 1})
    return sorted([doc["values"][0]["value"] async for doc in docs])


async def test_run_pass_deletes_past_default_and_own_retention_keeps_newer(
    settings: Settings, redis: Redis
) -> None:
    short = await add_device(retention_days=2)
    default = await add_device()
    longer = await add_device(retention_days=10)  # as long as the platform: the default
    orphan = ObjectId()  # readings whose device is gone
    for device in (short, default, longer, orphan):
        await add_readings(device, [0.5, 1.5, 3, 5, 9.9, 10.1, 15, 400])
    deleter = RetentionDeleter(retention_settings(settings), redis)
    deleted = await deleter.run_pass_leased()
    assert await ages(short) == [0.5, 1.5]
    for device in (default, longer, orphan):
        assert await ages(device) == [0.5, 1.5, 3, 5, 9.9]
    assert deleted == 6 + 3 * 3
    # Nothing left: a second pass deletes nothing.
    assert await deleter.run_pass_leased() == 0


async def test_run_pass_stopped_midway_resumes_on_restart(settings: Settings, redis: Redis) -> None:
    device = await add_device(retention_days=1)
    expired = [1.5 + i / 100 for i in range(120)]
    kept = [0.1, 0.5, 0.9]
    await add_readings(device, expired + kept)
    slow = retention_settings(settings, retention_batch_size=10, retention_batch_pause_ms=200)
    first = RetentionDeleter(slow, redis)
    task = asyncio.create_task(first.run_pass_leased())
    async with asyncio.timeout(30):
        while len(await ages(device)) > len(expired + kept) - 20:
            await asyncio.sleep(0.02)
    task.cancel()  # the process stops mid-pass
    await asyncio.gather(task, return_exceptions=True)
    left = await ages(device)
    assert len(kept) < len(left) < len(expired + kept), "the pass was not stopped midway"
    assert set(kept) <= set(left)
    # Started again (a new process): the lease of the stopped one is released or expires.
    await redis.delete(LEASE_KEY)
    second = RetentionDeleter(slow, redis)
    await second.run_pass_leased()
    assert await ages(device) == kept


async def test_run_pass_leased_one_process_at_a_time(settings: Settings, redis: Redis) -> None:
    device = await add_device(retention_days=1)
    await add_readings(device, [0.5, 2, 3])
    holder = RetentionDeleter(retention_settings(settings), redis)
    other = RetentionDeleter(retention_settings(settings), redis)
    assert await holder.lease.acquire()
    assert await other.run_pass_leased() is None  # another process runs a pass
    assert await ages(device) == [0.5, 2, 3]
    await holder.lease.release()
    assert await other.run_pass_leased() == 2
    assert await ages(device) == [0.5]
    assert await redis.get(LEASE_KEY) is None  # released after its pass


async def test_ensure_collection_ttl_matches_server_options(settings: Settings) -> None:
    configured = retention_settings(settings, reading_retention_days=20_000)
    applied = await ensure_collection_ttl(configured)
    collection = Reading.get_pymongo_collection()
    options = {
        info["name"]: info.get("options", {})
        async for info in await collection.database.list_collections()
    }
    if applied:  # a real MongoDB: the time-series collection expires by itself too
        assert applied == ["readings"]
        assert options["readings"]["expireAfterSeconds"] == 20_000 * 86400
    else:  # the stand-in refuses collMod: the deleter alone keeps the default
        assert "expireAfterSeconds" not in options["readings"]
