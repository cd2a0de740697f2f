"""Stored telemetry: pages of readings and per-bucket aggregates (from rollups where
they fit: services/rollups.py)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from bson import ObjectId

from models.accounts import User
from models.readings import Reading
from services import reading_hours, rollups
from services.devices import get_device
from services.errors import BadInput
from services.keyset import (
    TimePage,
    as_utc,
    decode_time_cursor,
    encode_time_cursor,
    page_of,
    page_query,
    time_range,
)
from services.validation import ensure_found

# bucket name -> ($dateTrunc unit, binSize, length)
BUCKETS: Final[dict[str, tuple[str, int, timedelta]]] = {
    "10s": ("second", 10, timedelta(seconds=10)),
    "1m": ("minute", 1, timedelta(minutes=1)),
    "15m": ("minute", 15, timedelta(minutes=15)),
    "1h": ("hour", 1, timedelta(hours=1)),
    "1d": ("day", 1, timedelta(days=1)),
}
METRIC_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_CURSOR_PREFIX = "r:"


type ReadingPage = TimePage[Reading]


@dataclass(frozen=True, slots=True)
class Bucket:
    start: datetime
    count: int
    min: float
    max: float
    avg: float


def encode_reading_cursor(reading: Reading) -> str:
    """An opaque cursor for one reading's position in time, then _id, order."""
    return encode_time_cursor(_CURSOR_PREFIX, reading.timestamp, reading.id)


def decode_reading_cursor(cursor: str) -> tuple[datetime, ObjectId]:
    """The (timestamp, _id) a cursor names; BadInput when it was not made here."""
    return decode_time_cursor(_CURSOR_PREFIX, cursor)


async def list_readings(
    viewer: User,
    device_id: str,
    *,
    start: datetime | None,
    end: datetime | None,
    first: int,
    after: str | None,
) -> ReadingPage:
    """Readings of a device the viewer may see, newest first, in [start, end)."""
    device = await get_device(viewer, device_id)
    stored_id = ensure_found(device.id, "Device")
    query = page_query(
        {"device_id": stored_id}, prefix=_CURSOR_PREFIX, start=start, end=end, after=after
    )
    newest = device.latest_reading.timestamp if device.latest_reading is not None else None
    # One more than asked for tells whether there is a next page.
    found = await reading_hours.newest_first(stored_id, query, limit=first + 1, newest=newest)
    return page_of([Reading.model_validate(doc) for doc in found], first, _CURSOR_PREFIX)


def bucket_count(start: datetime, end: datetime, bucket: str) -> int | None:
    """Buckets an aggregate over [start, end) may return (one more for alignment);
    None for a bucket name that is not one (aggregate refuses it)."""
    if bucket not in BUCKETS:
        return None
    length = BUCKETS[bucket][2]
    return max(0, math.ceil((as_utc(end) - as_utc(start)) / length)) + 1


async def aggregate(
    viewer: User,
    device_id: str,
    *,
    metric: str,
    start: datetime,
    end: datetime,
    bucket: str,
    max_buckets: int,
) -> list[Bucket]:
    """count/min/max/avg of one metric per non-empty time bucket, oldest first."""
    if bucket not in BUCKETS:
        raise BadInput("bucket", f"must be one of {', '.join(BUCKETS)}")
    if not METRIC_NAME.fullmatch(metric):
        raise BadInput("metric", "must be 1 to 64 letters, digits, '_', '.' or '-'")
    timestamp = time_range(start, end)
    unit, bin_size, _length = BUCKETS[bucket]
    # Also priced in the operation's cost (graph.limits); this bound stands on its own.
    if (bucket_count(start, end, bucket) or 0) > max_buckets:
        raise BadInput("bucket", f"the range spans more than {max_buckets} buckets")
    device = await get_device(viewer, device_id)
    stored_id = ensure_found(device.id, "Device")
    if bucket == "10s":  # finer than the finest rollup
        return await raw_buckets(stored_id, metric, start=start, end=end, bucket=bucket)
    length = BUCKETS[bucket][2]
    parts = await rollups.aggregate_buckets(
        stored_id,
        metric,
        timestamp["$gte"],
        timestamp["$lt"],
        length=length,
        unit=unit,
        bin_size=bin_size,
    )
    return [
        Bucket(start=at, count=p.count, min=p.min, max=p.max, avg=p.sum / p.count)
        for at, p in parts
    ]


async def raw_buckets(
    device_id: ObjectId, metric: str, *, start: datetime, end: datetime, bucket: str
) -> list[Bucket]:
    """The aggregate computed from raw readings alone: the reference the rollups answer
    the same as (and the 10-second buckets' source)."""
    unit, bin_size, _length = BUCKETS[bucket]
    rows = await rollups.raw_partials(device_id, metric, as_utc(start), as_utc(end), unit, bin_size)
    return [
        Bucket(
            start=as_utc(row["_id"]),
            count=int(row["count"]),
            min=float(row["min"]),
            max=float(row["max"]),
            avg=float(row["avg"]),
        )
        for row in rows
    ]
