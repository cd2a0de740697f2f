"""Retention: device data older than its retention is deleted, in the background.

What expires is a small registry (`EXPIRING`): a document model, the field naming its
device and the field holding its time. Each kind has a platform default (a setting);
kinds that follow the device's own `retentionDays` use the shorter of the two.

The deleter runs in every API process, one pass at a time platform-wide (a Redis
lease). A pass deletes, per kind, what is older than the default (every device,
orphans included), then, per device with a shorter retention of its own, what is older
than that; always in batches of at most RETENTION_BATCH_SIZE documents found, resting
RETENTION_BATCH_PAUSE_MS between batches, so ingest keeps the database. Every batch is
a delete with the cutoff in its filter: a pass cut short (a restart, a lost lease)
leaves nothing half done and the next pass goes on from what is left; nothing newer
than a cutoff is ever deleted. On real MongoDB the readings collection also carries
the default as its TTL (`expireAfterSeconds`, set by `collMod`); see docs/data.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from beanie import Document
from bson import ObjectId
from pymongo.errors import OperationFailure, PyMongoError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.lease import LeaseLost, RedisLease
from core.settings import ApiSettings
from models.accounts import utcnow
from models.device_logs import DeviceLog
from models.devices import Device
from models.readings import Reading
from models.rollups import HourRollup, MinuteRollup
from services.errors import BadInput
from services.rollups import repair_pending

logger = logging.getLogger(__name__)

LEASE_KEY: Final = "retention:lease"
# Devices read per page while looking for retentions of their own.
DEVICE_PAGE: Final = 500


@dataclass(frozen=True, slots=True)
class Expiring:
    """A kind of device data that ages out."""

    model: type[Document]
    device_field: str
    time_field: str
    # The platform default, in days, from the settings.
    default_days: Callable[[ApiSettings], int]
    # Whether a device's own retentionDays applies (rollups, kept longer, say no).
    per_device: bool = True
    # A MongoDB time-series collection whose expireAfterSeconds is the default.
    collection_ttl: bool = False


# Each kind of device data that ages out, one line each (rollups register here too).
EXPIRING: Final[tuple[Expiring, ...]] = (
    Expiring(
        Reading, "device_id", "timestamp", lambda s: s.reading_retention_days, collection_ttl=True
    ),
    # Logs: their default is also a TTL index on real MongoDB (models/device_logs.py);
    # the deleter keeps it on the stand-in and applies a device's shorter retention.
    Expiring(DeviceLog, "device_id", "timestamp", lambda s: s.device_log_retention_days),
    # Rollups outlive raw readings (they answer aggregates the raw data no longer
    # covers): their own settings, not shortened by a device's retentionDays.
    Expiring(
        MinuteRollup,
        "device_id",
        "start",
        lambda s: s.rollup_minute_retention_days,
        per_device=False,
    ),
    Expiring(
        HourRollup, "device_id", "start", lambda s: s.rollup_hour_retention_days, per_device=False
    ),
)


@dataclass(frozen=True, slots=True)
class RetentionChange:
    """A device's new retention: days, or None for the platform default."""

    days: int | None

    @classmethod
    def checked(cls, days: int | None, settings: ApiSettings) -> RetentionChange:
        """BadInput unless `days` is None or 1..READING_RETENTION_DAYS (a device may keep
        its data for less than the platform, not for more)."""
        ceiling = settings.reading_retention_days
        if days is not None and not 1 <= days <= ceiling:
            raise BadInput(
                "retentionDays",
                f"must be 1 to {ceiling} (the platform's retention), or null for the default",
            )
        return cls(days)


def effective_days(device: Device, settings: ApiSettings) -> int:
    """How long the device's raw data is kept."""
    default = settings.reading_retention_days
    return min(device.retention_days or default, default)


async def delete_device_data(device_id: ObjectId) -> None:
    """Everything registered in EXPIRING that belongs to one device (device deletion)."""
    for kind in EXPIRING:
        await kind.model.get_pymongo_collection().delete_many({kind.device_field: device_id})


async def ensure_collection_ttl(settings: ApiSettings) -> list[str]:
    """Give each time-series kind's collection its default as `expireAfterSeconds`.

    Real MongoDB then drops whole buckets past the default by itself. Returns the
    collections it was set on; where the server refuses `collMod` (the stand-in) the
    deleter alone keeps the default.
    """
    done = []
    for kind in EXPIRING:
        if not kind.collection_ttl:
            continue
        collection = kind.model.get_pymongo_collection()
        seconds = kind.default_days(settings) * 86400
        try:
            await collection.database.command(
                {"collMod": collection.name, "expireAfterSeconds": seconds}
            )
        except OperationFailure as err:
            logger.info(
                "retention: %s has no TTL here (%s); the background deleter keeps %d days",
                collection.name,
                err.details.get("errmsg") if err.details else err,
                kind.default_days(settings),
            )
            continue
        done.append(collection.name)
    return done


class RetentionDeleter:
    """Deletion passes under a lease; `run` until cancelled."""

    def __init__(
        self,
        settings: ApiSettings,
        redis: Redis,
        *,
        kinds: tuple[Expiring, ...] = EXPIRING,
    ) -> None:
        self.settings = settings
        self.kinds = kinds
        self.batch_size = settings.retention_batch_size
        self.pause = settings.retention_batch_pause_ms / 1000
        # A batch renews it; it outlives a slow batch by far.
        self.lease = RedisLease(redis, LEASE_KEY, ttl_seconds=60 + 2 * self.pause)

    async def run(self) -> None:
        """A pass, if no other process runs one, every RETENTION_INTERVAL_SECONDS."""
        while True:
            try:
                await self.run_pass_leased()
            except LeaseLost:
                logger.info("retention: lease lost; another process goes on")
            except (PyMongoError, RedisError) as err:
                logger.warning("retention: pass interrupted (%s); retried next interval", err)
            except Exception:
                logger.exception("retention pass failed")
            await asyncio.sleep(self.settings.retention_interval_seconds)

    async def run_pass_leased(self) -> int | None:
        """One pass if the lease is free (its deleted count), None when another runs one."""
        if not await self.lease.acquire():
            return None
        try:
            return await self.run_pass()
        finally:
            await self.lease.release()

    async def run_pass(self) -> int:
        """Delete everything past its retention now; the number of documents deleted.

        First, rollups a crash left behind are rebuilt from raw readings while those
        are still there."""
        await repair_pending()
        now = utcnow()
        deleted = 0
        for kind in self.kinds:
            default = kind.default_days(self.settings)
            cutoff = now - timedelta(days=default)
            deleted += await self._expire(kind, {kind.time_field: {"$lt": cutoff}})
            if not kind.per_device:
                continue
            async for device_id, days in _shorter_retentions(default):
                condition = {
                    kind.device_field: device_id,
                    kind.time_field: {"$lt": now - timedelta(days=days)},
                }
                deleted += await self._expire(kind, condition)
        await _forget_expired_latest(self.settings, now)
        if deleted:
            logger.info("retention: %d documents deleted", deleted)
        return deleted

    async def _expire(self, kind: Expiring, condition: dict[str, Any]) -> int:
        """Delete what matches `condition`, a batch at a time."""
        collection = kind.model.get_pymongo_collection()
        deleted = 0
        while True:
            found = [
                doc["_id"]
                async for doc in collection.find(condition, {"_id": 1}).limit(self.batch_size)
            ]
            if not found:
                return deleted
            # The batch is the span of _ids found, and the condition still holds inside
            # it: an `_id: {$in: [...]}` filter costs the stand-in a comparison per id per
            # document (seconds for one batch), a range costs it one.
            result = await collection.delete_many(
                {**condition, "_id": {"$gte": min(found), "$lte": max(found)}}
            )
            deleted += result.deleted_count
            await self.lease.renew()
            if len(found) < self.batch_size:
                return deleted
            await asyncio.sleep(self.pause)


async def _forget_expired_latest(settings: ApiSettings, now: datetime) -> None:
    """Clear devices' latest readings that retention deleted (latestReading is the newest
    stored reading, as it was when read from the readings)."""
    devices = Device.get_pymongo_collection()
    default = settings.reading_retention_days
    stamp = "latest_reading.timestamp"
    await devices.update_many(
        {stamp: {"$lt": now - timedelta(days=default)}}, {"$unset": {"latest_reading": ""}}
    )
    async for device_id, days in _shorter_retentions(default):
        await devices.update_one(
            {"_id": device_id, stamp: {"$lt": now - timedelta(days=days)}},
            {"$unset": {"latest_reading": ""}},
        )


async def _shorter_retentions(default: int) -> AsyncIterator[tuple[ObjectId, int]]:
    """(device id, days) of each device keeping its data less than `default` days."""
    collection = Device.get_pymongo_collection()
    after: ObjectId | None = None
    while True:
        query: dict[str, Any] = {"retention_days": {"$gt": 0, "$lt": default}}
        if after is not None:
            query["_id"] = {"$gt": after}
        page = [
            doc
            async for doc in collection.find(query, {"retention_days": 1})
            .sort("_id", 1)
            .limit(DEVICE_PAGE)
        ]
        for doc in page:
            yield doc["_id"], int(doc["retention_days"])
        if len(page) < DEVICE_PAGE:
            return
        after = page[-1]["_id"]


@asynccontextmanager
async def running_retention(settings: ApiSettings, redis: Redis) -> AsyncIterator[RetentionDeleter]:
    """Set the collections' TTL where the server has one, and run the deleter until the
    block ends."""
    try:
        await ensure_collection_ttl(settings)
    except PyMongoError as err:
        logger.warning("retention: TTL not set (%s); the deleter keeps the default", err)
    deleter = RetentionDeleter(settings, redis)
    task = asyncio.create_task(deleter.run(), name="retention-deleter")
    try:
        yield deleter
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def cutoff_for(days: int, now: datetime | None = None) -> datetime:
    """The oldest time kept by a retention of `days` days."""
    return (now or utcnow()) - timedelta(days=days)
