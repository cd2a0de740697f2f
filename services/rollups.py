"""Aggregates answered from rollups; rollups rebuilt from raw readings when in doubt.

`aggregate_buckets` splits [start, end) into what each source answers exactly: whole
hours from the hour rollups (when the bucket is an hour or longer), whole minutes from
the minute rollups, and only the sub-minute edges (the still-open minute at "now"
among them) from raw readings. Each bucket's count/min/max/sum is the merge of its
parts; avg is sum / count. Same answers as the raw aggregation
(services/readings.raw_buckets), which stays the reference.

`rebuild_hour` recomputes one hour of one device from its raw readings without losing
a concurrent increment: it reads the documents' versions first, then the raw
readings, gives way while a chunk of that hour is being stored (a fresh pending
record), and writes only documents whose version is still the one it read.
`repair_pending` rebuilds the hours of pending records left behind (a crash or a
failed write between storing readings and applying their rollups).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from bson import ObjectId
from pymongo import DESCENDING
from pymongo.errors import DuplicateKeyError

from ingest.payloads import MAX_FUTURE
from ingest.rollups import (
    from_millis,
    latest_update,
    millis,
    millis_of,
    pending_key,
    rollup_filter,
    rollup_id,
)
from models.accounts import utcnow
from models.devices import Device
from models.readings import Reading
from models.rollups import HourRollup, MinuteRollup, Rollup, RollupPending
from services import reading_hours

logger = logging.getLogger(__name__)

MINUTE: Final = 60_000
HOUR: Final = 3_600_000
# A pending record older than this is taken as abandoned (a chunk's mark, insert and
# rollup writes take well under a second).
PENDING_STALE: Final = timedelta(seconds=60)
# Readings newer than this may not be in the rollups yet (a worker applies them every
# INGEST_STATUS_FLUSH_SECONDS): aggregates read them raw. A minute of one device.
OPEN_EDGE: Final = timedelta(seconds=30)


@dataclass(slots=True)
class Partial:
    count: int
    min: float
    max: float
    sum: float

    def merge(self, count: int, low: float, high: float, total: float) -> None:
        self.count += count
        self.min = min(self.min, low)
        self.max = max(self.max, high)
        self.sum += total


type Merged = dict[int, Partial]  # bucket start (epoch ms) -> stats


def _merge(into: Merged, bucket: int, count: int, low: float, high: float, total: float) -> None:
    found = into.get(bucket)
    if found is None:
        into[bucket] = Partial(count, low, high, total)
    else:
        found.merge(count, low, high, total)


def _ceil(value: int, step: int) -> int:
    return -(-value // step) * step


# Spans read by their `_id`s (a direct lookup each, on the stand-in too: with the span's
# start, ingest.rollups.rollup_filter, also where no document is) rather than by a range
# over the device's documents (which the stand-in filters one by one).
BY_ID_SPANS: Final = 4


async def _rollup_parts(
    kind: type[Rollup], device_id: ObjectId, metric: str, start: int, end: int
) -> list[tuple[int, dict[str, Any]]]:
    """(bucket start, stats) of `kind`'s finer buckets inside [start, end)."""
    span, grain = millis_of(kind.span), millis_of(kind.grain)
    collection = kind.get_pymongo_collection()
    projection = {"start": 1, "parts": 1}
    first = start - start % span
    if (end - first) <= BY_ID_SPANS * span:
        filters = [rollup_filter(device_id, metric, at) for at in range(first, end, span)]
        found = await asyncio.gather(*(collection.find_one(f, projection) for f in filters))
        docs = [doc for doc in found if doc is not None]
    else:
        query = {
            "device_id": device_id,
            "metric": metric,
            "start": {"$gte": from_millis(first), "$lt": from_millis(end)},
        }
        docs = await collection.find(query, projection).to_list(None)
    parts = []
    for doc in docs:
        base = millis(doc["start"])
        for key, stats in doc.get("parts", {}).items():
            at = base + int(key[1:]) * grain
            if start <= at < end:
                parts.append((at, stats))
    return parts


async def raw_partials(
    device_id: ObjectId, metric: str, start: datetime, end: datetime, unit: str, bin_size: int
) -> list[dict[str, Any]]:
    """Rows {_id: bucket start, count, min, max, sum, avg} of raw readings in [start, end)."""
    pipeline: list[dict[str, Any]] = [
        # device and time first: a time-series collection prunes whole buckets on these.
        {"$match": {"device_id": device_id, "timestamp": {"$gte": start, "$lt": end}}},
        {"$unwind": "$values"},
        {"$match": {"values.metric": metric}},
        {
            "$group": {
                "_id": {"$dateTrunc": {"date": "$timestamp", "unit": unit, "binSize": bin_size}},
                "count": {"$sum": 1},
                "min": {"$min": "$values.value"},
                "max": {"$max": "$values.value"},
                "sum": {"$sum": "$values.value"},
                "avg": {"$avg": "$values.value"},
            }
        },
        {"$sort": {"_id": 1}},
    ]
    rows = await Reading.get_pymongo_collection().aggregate(pipeline)
    return [row async for row in rows]


async def _raw_edges(
    merged: Merged, device_id: ObjectId, metric: str, edges: list[tuple[int, int]], size: int
) -> None:
    """Merge the raw readings of the `edges` (each under a minute and a half, or the
    open edge up to the newest time a reading may have: a few readings) into their
    buckets: a query per hour they touch (services/reading_hours)."""
    latest_possible = millis(utcnow() + MAX_FUTURE) + 1
    ranges = [(low, min(high, latest_possible)) for low, high in edges]
    ranges = [(low, high) for low, high in ranges if low < high]
    found = await reading_hours.find_hours(device_id, ranges, {"timestamp": 1, "values": 1})
    for doc in found:
        at = millis(doc["timestamp"])
        for value in doc["values"]:
            if value["metric"] == metric:
                number = float(value["value"])
                _merge(merged, at - at % size, 1, number, number, number)


async def aggregate_buckets(
    device_id: ObjectId,
    metric: str,
    start: datetime,
    end: datetime,
    *,
    length: timedelta,
    unit: str,
    bin_size: int,
) -> list[tuple[datetime, Partial]]:
    """Buckets of `length` (a whole number of minutes) over [start, end), oldest first."""
    size = millis_of(length)
    s, e = millis(start), millis(end)
    merged: Merged = {}
    raw: list[tuple[int, int]] = []
    # The open edge: what the workers may not have flushed into the rollups yet.
    open_from = millis(utcnow() - OPEN_EDGE)
    open_from -= open_from % MINUTE
    if e > open_from:
        raw.append((max(s, open_from), e))
        e = max(s, open_from)
    s1, e1 = _ceil(s, MINUTE), e - e % MINUTE
    minutes: list[tuple[int, int]] = []
    hours: list[tuple[int, int]] = []
    if s >= e:
        pass
    elif s1 >= e1:
        raw.append((s, e))
    else:
        raw += [(s, s1), (e1, e)]
        s2, e2 = _ceil(s1, HOUR), e1 - e1 % HOUR
        if size >= HOUR and s2 < e2:
            minutes += [(s1, s2), (e2, e1)]
            hours.append((s2, e2))
        else:
            minutes.append((s1, e1))
    edges = [(low, high) for low, high in raw if low < high]
    if edges:
        await _raw_edges(merged, device_id, metric, edges, size)
    for kind, spans in ((MinuteRollup, minutes), (HourRollup, hours)):
        for low, high in spans:
            if low >= high:
                continue
            for at, stats in await _rollup_parts(kind, device_id, metric, low, high):
                _merge(
                    merged,
                    at - at % size,
                    int(stats["count"]),
                    float(stats["min"]),
                    float(stats["max"]),
                    float(stats["sum"]),
                )
    return [(from_millis(at), merged[at]) for at in sorted(merged)]


async def _fresh_pending(key: str, since: datetime) -> bool:
    """Whether a chunk of this (device, hour) may be being stored right now."""
    found = await RollupPending.get_pymongo_collection().find_one(
        {"hours": key, "at": {"$gte": since}}, {"_id": 1}
    )
    return found is not None


async def _write(kind: type[Rollup], doc: dict[str, Any], version: int | None) -> bool:
    """Replace a rollup document if its version is still `version` (None: absent)."""
    collection = kind.get_pymongo_collection()
    doc["version"] = (version or 0) + 1
    if version is None:
        try:
            await collection.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True
    result = await collection.replace_one({"_id": doc["_id"], "version": version}, doc)
    return result.matched_count == 1


def _stats(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "count": int(row["count"]),
        "min": float(row["min"]),
        "max": float(row["max"]),
        "sum": float(row["sum"]),
    }


def _totals(parts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    listed = list(parts)
    return {
        "count": sum(p["count"] for p in listed),
        "min": min(p["min"] for p in listed),
        "max": max(p["max"] for p in listed),
        "sum": sum(p["sum"] for p in listed),
    }


async def rebuild_hour(device_id: ObjectId, hour: int, *, fresh_since: datetime) -> bool:
    """Recompute one hour (epoch ms) of a device's rollups from its raw readings; False
    when it gave way to a concurrent write (try again later)."""
    day = hour - hour % millis_of(HourRollup.span)
    hour_start, day_start = from_millis(hour), from_millis(day)
    minute_docs = {
        doc["metric"]: doc
        async for doc in MinuteRollup.get_pymongo_collection().find(
            {"device_id": device_id, "start": hour_start}
        )
    }
    day_docs = {
        doc["metric"]: doc
        async for doc in HourRollup.get_pymongo_collection().find(
            {"device_id": device_id, "start": day_start}
        )
    }
    match = await reading_hours.hour_filter(
        device_id, hour, {"$gte": hour_start, "$lt": from_millis(hour + HOUR)}
    )
    pipeline: list[dict[str, Any]] = [
        {"$match": match},
        {"$unwind": "$values"},
        {
            "$group": {
                "_id": {
                    "metric": "$values.metric",
                    "minute": {"$dateTrunc": {"date": "$timestamp", "unit": "minute"}},
                },
                "count": {"$sum": 1},
                "min": {"$min": "$values.value"},
                "max": {"$max": "$values.value"},
                "sum": {"$sum": "$values.value"},
            }
        },
    ]
    by_metric: dict[str, dict[str, dict[str, Any]]] = {}
    async for row in await Reading.get_pymongo_collection().aggregate(pipeline):
        offset = (millis(row["_id"]["minute"]) - hour) // MINUTE
        by_metric.setdefault(row["_id"]["metric"], {})[f"k{offset}"] = _stats(row)
    if await _fresh_pending(pending_key(device_id, hour), fresh_since):
        return False
    done = True
    for metric, parts in by_metric.items():
        old = minute_docs.get(metric)
        minute_doc = {
            "_id": rollup_id(device_id, metric, hour),
            "device_id": device_id,
            "metric": metric,
            "start": hour_start,
            **_totals(parts.values()),
            "parts": parts,
        }
        done &= await _write(MinuteRollup, minute_doc, old["version"] if old else None)
        old_day = day_docs.get(metric)
        day_parts = dict(old_day["parts"]) if old_day else {}
        day_parts[f"k{(hour - day) // HOUR}"] = _totals(parts.values())
        day_doc = {
            "_id": rollup_id(device_id, metric, day),
            "device_id": device_id,
            "metric": metric,
            "start": day_start,
            **_totals(day_parts.values()),
            "parts": day_parts,
        }
        done &= await _write(HourRollup, day_doc, old_day["version"] if old_day else None)
    return done


async def rebuild(device_id: ObjectId, start: datetime, end: datetime) -> int:
    """Recompute a device's rollups of every hour touching [start, end) from its raw
    readings (after raw data was changed outside the write path); hours rebuilt."""
    since = utcnow() - PENDING_STALE
    hour = millis(start) - millis(start) % HOUR
    rebuilt = 0
    while hour < millis(end):
        for _ in range(5):
            if await rebuild_hour(device_id, hour, fresh_since=since):
                rebuilt += 1
                break
        hour += HOUR
    return rebuilt


async def _repair_latest(device_id: ObjectId) -> None:
    newest = await Reading.get_pymongo_collection().find_one(
        {"device_id": device_id}, sort=[("timestamp", DESCENDING)]
    )
    if newest is not None:
        await Device.get_pymongo_collection().bulk_write([latest_update(device_id, newest)])


async def repair_pending(*, stale: timedelta = PENDING_STALE) -> int:
    """Rebuild the hours named by pending records older than `stale`; records repaired."""
    since = utcnow() - stale
    collection = RollupPending.get_pymongo_collection()
    repaired = 0
    async for record in collection.find({"at": {"$lt": since}}).limit(100):
        done = True
        devices = set()
        for key in record["hours"]:
            device, hour = key.split(":")
            devices.add(ObjectId(device))
            done &= await rebuild_hour(ObjectId(device), int(hour), fresh_since=since)
        for device_id in devices:
            await _repair_latest(device_id)
        if done:
            await collection.delete_one({"_id": record["_id"]})
            repaired += 1
    if repaired:
        logger.info("rollups: %d abandoned chunks rebuilt from raw readings", repaired)
    return repaired
