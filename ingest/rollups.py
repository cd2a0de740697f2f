"""What the write path keeps in step with stored readings: rollups and latest values.

`insert_readings` (ingest/store.py) calls `Summary.of(chunk)` on each chunk of fresh
readings it is about to insert, then, once they are stored, `apply(summary)`: one
`bulk_write` of `$inc`/`$min`/`$max` upserts for the rollups (one per (device,
metric, hour) and per (device, metric, day) in the chunk, whatever its size), and one
conditional `$set` per device of its newest reading, which never replaces a newer one
(late readings leave it alone). Only inserted readings are counted: the store drops
duplicates before this (redelivery must not count twice).

A crash between storing the readings and applying their rollups: `mark` writes a
pending record of the chunk's (device, hour)s before the insert, `unmark` deletes it
after `apply`; one left behind is rebuilt from the raw readings
(services/rollups.repair_pending).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import UpdateOne

from models.accounts import utcnow
from models.devices import Device
from models.rollups import ROLLUPS, Rollup, RollupPending

logger = logging.getLogger(__name__)

# Gathered rollups older than this are left to the repair (half its PENDING_STALE).
GIVE_UP = timedelta(seconds=30)

APPLY_SLICE = 200

type Stats = list[float]  # [count, min, max, sum]
type RollupKey = tuple[ObjectId, str, int]  # device, metric, span start (epoch ms)


def millis(moment: datetime) -> int:
    """Epoch milliseconds of a datetime (naive ones are UTC, as PyMongo returns them)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def from_millis(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def rollup_id(device_id: ObjectId, metric: str, start_ms: int) -> str:
    """A rollup document's `_id` (metric names hold no ':', ingest.payloads.METRIC_NAME)."""
    return f"{device_id}:{metric}:{start_ms}"


def _add(stats: Stats | None, value: float) -> Stats:
    if stats is None:
        return [1, value, value, value]
    stats[0] += 1
    stats[1] = min(stats[1], value)
    stats[2] = max(stats[2], value)
    stats[3] += value
    return stats


def _merge(into: Stats, other: Stats) -> None:
    into[0] += other[0]
    into[1] = min(into[1], other[1])
    into[2] = max(into[2], other[2])
    into[3] += other[3]


@dataclass(slots=True)
class RollupDelta:
    """One document's change: its totals and its finer buckets (offset -> stats)."""

    total: Stats = field(default_factory=lambda: [0, math.inf, -math.inf, 0.0])
    parts: dict[int, Stats] = field(default_factory=dict)

    def add(self, offset: int, value: float) -> None:
        _add(self.total, value)
        self.parts[offset] = _add(self.parts.get(offset), value)

    def merge(self, other: RollupDelta) -> None:
        _merge(self.total, other.total)
        for offset, stats in other.parts.items():
            mine = self.parts.get(offset)
            if mine is None:
                self.parts[offset] = list(stats)
            else:
                _merge(mine, stats)


@dataclass(slots=True)
class Summary:
    """Per rollup kind, the deltas of a chunk of readings; each device's newest reading."""

    deltas: dict[type[Rollup], dict[RollupKey, RollupDelta]]
    latest: dict[ObjectId, dict[str, Any]]

    @classmethod
    def empty(cls) -> Summary:
        return cls({kind: {} for kind in ROLLUPS}, {})

    @classmethod
    def of(cls, documents: list[dict[str, Any]]) -> Summary:
        """The deltas and latest readings of reading documents (as stored)."""
        deltas: dict[type[Rollup], dict[RollupKey, RollupDelta]] = {kind: {} for kind in ROLLUPS}
        latest: dict[ObjectId, dict[str, Any]] = {}
        spans = [(kind, millis_of(kind.span), millis_of(kind.grain)) for kind in ROLLUPS]
        for doc in documents:
            device = doc["device_id"]
            at = millis(doc["timestamp"])
            newest = latest.get(device)
            if newest is None or at > millis(newest["timestamp"]):
                latest[device] = doc
            for kind, span, grain in spans:
                start = at - at % span
                offset = (at - start) // grain
                into = deltas[kind]
                for value in doc["values"]:
                    key = (device, value["metric"], start)
                    delta = into.get(key)
                    if delta is None:
                        delta = into[key] = RollupDelta()
                    delta.add(offset, float(value["value"]))
        return cls(deltas, latest)

    def merge(self, other: Summary) -> None:
        """Add another chunk's deltas and latest readings to these."""
        for kind, deltas in other.deltas.items():
            into = self.deltas.setdefault(kind, {})
            for key, delta in deltas.items():
                mine = into.get(key)
                if mine is None:
                    into[key] = RollupDelta(
                        list(delta.total), {o: list(v) for o, v in delta.parts.items()}
                    )
                else:
                    mine.merge(delta)
        for device, doc in other.latest.items():
            newest = self.latest.get(device)
            if newest is None or millis(doc["timestamp"]) > millis(newest["timestamp"]):
                self.latest[device] = doc

    def hours(self) -> list[str]:
        """The (device, hour start) pairs the chunk touches, as `pending_key`s."""
        minute = self.deltas[ROLLUPS[0]]
        return sorted({pending_key(device, start) for device, _, start in minute})


def pending_key(device_id: ObjectId, hour_ms: int) -> str:
    """How a pending record names one hour of one device."""
    return f"{device_id}:{hour_ms}"


def millis_of(length: timedelta) -> int:
    return int(length.total_seconds() * 1000)


def rollup_filter(device: ObjectId, metric: str, start: int) -> dict[str, Any]:
    """The filter of one rollup document: its `_id`, and the span's `start` beside it.

    MongoDB finds the document by `_id` either way. The stand-in, when no document has
    the `_id` (every new hour and day; an aggregate's span without readings), scans for
    one that matches the filter: the whole collection, unless a single-field equality
    index narrows it down. The `start` index narrows it to one span's (device, metric)s.
    Without it the scan cost 5.6 us per stored rollup: an upsert creating a document took
    46 ms at 8,000 documents (2 ms with `start`: bench/seed_parts.py), a find of a missing
    one 57.7 ms at 30,000 (1.2 ms with `start`).
    """
    return {"_id": rollup_id(device, metric, start), "start": from_millis(start)}


def rollup_update(key: RollupKey, delta: RollupDelta) -> UpdateOne:
    """The upsert adding `delta` to its document (found by `rollup_filter`)."""
    device, metric, start = key
    total = delta.total
    inc: dict[str, Any] = {"count": total[0], "sum": total[3], "version": 1}
    low: dict[str, Any] = {"min": total[1]}
    high: dict[str, Any] = {"max": total[2]}
    for offset, (count, lo, hi, sum_) in delta.parts.items():
        inc[f"parts.k{offset}.count"] = count
        inc[f"parts.k{offset}.sum"] = sum_
        low[f"parts.k{offset}.min"] = lo
        high[f"parts.k{offset}.max"] = hi
    return UpdateOne(
        rollup_filter(device, metric, start),
        {
            "$inc": inc,
            "$min": low,
            "$max": high,
            "$setOnInsert": {"device_id": device, "metric": metric},
        },
        upsert=True,
    )


def latest_update(device: ObjectId, doc: dict[str, Any]) -> UpdateOne:
    """Set the device's latest reading unless it holds a newer (or as new) one."""
    reading = {
        "timestamp": doc["timestamp"],
        "values": doc["values"],
        "anomaly": bool(doc.get("anomaly", False)),
    }
    return UpdateOne(
        {
            "_id": device,
            "$or": [
                {"latest_reading": None},
                {"latest_reading.timestamp": {"$lt": doc["timestamp"]}},
            ],
        },
        {"$set": {"latest_reading": reading}},
    )


async def mark(summary: Summary) -> ObjectId:
    """Record the chunk's (device, hour)s as being rolled up; the record's id."""
    marker = ObjectId()
    await RollupPending.get_pymongo_collection().insert_one(
        {"_id": marker, "at": utcnow(), "hours": summary.hours()}
    )
    return marker


async def unmark(marker: ObjectId) -> None:
    """The chunk's rollups are applied."""
    await RollupPending.get_pymongo_collection().delete_one({"_id": marker})


async def apply(summary: Summary) -> None:
    """Add a stored chunk's deltas to the rollups; move its devices' latest readings."""
    for kind, deltas in summary.deltas.items():
        operations = [rollup_update(key, delta) for key, delta in deltas.items()]
        # In slices: on the stand-in an upsert costs milliseconds (more as the collection
        # grows), and one call must stay well inside the driver's socket timeout.
        for start in range(0, len(operations), APPLY_SLICE):
            await kind.get_pymongo_collection().bulk_write(
                operations[start : start + APPLY_SLICE], ordered=False
            )
    if summary.latest:
        operations = [latest_update(device, doc) for device, doc in summary.latest.items()]
        await Device.get_pymongo_collection().bulk_write(operations, ordered=False)


class Accumulator:
    """Chunks' summaries gathered between flushes (the worker's store flushes every
    INGEST_STATUS_FLUSH_SECONDS): a (device, metric, hour) written by many batches
    costs one upsert per flush, not one per batch. Their pending records stay until
    the flush has applied them, so a crash in between is repaired from raw readings."""

    def __init__(self) -> None:
        self._summary = Summary.empty()
        self._markers: list[ObjectId] = []

    @property
    def empty(self) -> bool:
        return not self._markers

    def add(self, summary: Summary, marker: ObjectId) -> None:
        self._summary.merge(summary)
        self._markers.append(marker)

    async def flush(self) -> None:
        """Apply what was gathered; kept for the next flush if a write fails."""
        if not self._markers:
            return
        summary, markers = self._summary, self._markers
        self._summary, self._markers = Summary.empty(), []
        if utcnow() - markers[0].generation_time > GIVE_UP:
            # Failing for this long: the repair may take these hours any moment now
            # (services/rollups.PENDING_STALE); applying them too would count twice.
            logger.warning("rollups of %d chunks left to the repair", len(markers))
            return
        try:
            await apply(summary)
        except BaseException:
            summary.merge(self._summary)
            self._summary, self._markers = summary, markers + self._markers
            raise
        await RollupPending.get_pymongo_collection().delete_many({"_id": {"$in": markers}})
