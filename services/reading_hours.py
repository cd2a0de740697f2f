"""One device's readings an hour at a time: pages, an aggregate's raw edges and an hour's
rebuild whose cost is bounded by the hours they read, whatever the history's depth.

Every reading carries `hour`, "<device id>:<hour start ms>" (models.readings.hour_key,
set by the write path). A query for one hour names it first, then the device and the
time range: MongoDB answers it from its (device_id, timestamp) index, the stand-in
(which uses single-field equality indexes only, the first one it finds) from the
`hour` index, one hour of one device instead of the device's whole history.

A page walks the hours newest first and stops once it has what it needs. It starts at
the hour of the device's latest reading (the device document: no probes of the empty
hours above it), after any newer hours the write path's pending records name (stored
readings whose latest value is not applied yet). Two empty hours in a row end the
walk: the rest of the page is one plain query over the remaining range (on MongoDB the
same index scan; on the stand-in the device's readings, as every page cost before), so
a sparse device costs at most three queries more, never one per empty hour.

Readings stored by releases before the key have none: `keyed_since()` is the time from
which every reading has one (a marker in platform_markers, decided once: the epoch when
no reading lacks a key, else the marker's creation plus UPGRADE_GRACE for ingest
workers of the old release still running). Hours before it are read by the plain query.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bson import ObjectId
from pymongo import DESCENDING
from pymongo.errors import DuplicateKeyError

from ingest.rollups import from_millis, millis
from models.accounts import utcnow
from models.platform import Marker
from models.readings import HOUR_MS, Reading
from models.rollups import RollupPending

KEYS_MARKER: Final = "reading-hour-keys-v1"
# How long after the first start of this release readings are still read without their
# key: ingest workers of the previous release may store some until they are replaced.
UPGRADE_GRACE: Final = timedelta(hours=1)
# Empty hours in a row after which the rest of a page is one plain query.
EMPTY_HOURS: Final = 2
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

_since_ms: int | None = None
_SORT: Final = [("timestamp", DESCENDING), ("_id", DESCENDING)]


async def keyed_since() -> int:
    """Epoch ms from which every stored reading carries its `hour` key (cached). The API
    decides it at start, so no request pays for a first decision's find."""
    global _since_ms  # one per process, decided once per database
    if _since_ms is not None:
        return _since_ms
    marker = await Marker.get(KEYS_MARKER)
    if marker is None:
        # On the stand-in a scan (it indexes no null); once per database.
        unkeyed = await Reading.get_pymongo_collection().find_one({"hour": None}, {"_id": 1})
        since = _EPOCH if unkeyed is None else utcnow() + UPGRADE_GRACE
        with contextlib.suppress(DuplicateKeyError):  # another process decided first
            await Marker(id=KEYS_MARKER, claimed_by="reading_hours", claimed_at=since).insert()
        marker = await Marker.get(KEYS_MARKER)
    _since_ms = millis(marker.claimed_at) if marker is not None else millis(utcnow())
    return _since_ms


def forget_keyed_since() -> None:
    """Decide again at the next read (a database emptied underneath, in tests)."""
    global _since_ms
    _since_ms = None


def _within(condition: Mapping[str, datetime], low: int, high: int) -> dict[str, datetime] | None:
    """`condition` (a timestamp range) narrowed to [low, high) ms; None when empty."""
    narrowed = dict(condition)
    lower = max(low, millis(condition["$gte"])) if "$gte" in condition else low
    narrowed["$gte"] = from_millis(lower)
    upper = high
    if "$lt" in condition:
        upper = min(upper, millis(condition["$lt"]))
    narrowed["$lt"] = from_millis(upper)
    if "$lte" in condition and millis(condition["$lte"]) < lower:
        return None
    return narrowed if lower < upper else None


async def hour_filter(
    device_id: ObjectId, hour: int, timestamp: Mapping[str, datetime]
) -> dict[str, Any] | None:
    """The filter of one device's readings of one hour (epoch ms) within `timestamp`;
    None when they do not meet. By key where readings carry it, else by device and time."""
    narrowed = _within(timestamp, hour, hour + HOUR_MS)
    if narrowed is None:
        return None
    query: dict[str, Any] = {}
    if hour >= await keyed_since():
        query["hour"] = f"{device_id}:{hour}"  # first: the stand-in's index
    query["device_id"] = device_id
    query["timestamp"] = narrowed
    return query


async def find_hours(
    device_id: ObjectId, ranges: list[tuple[int, int]], projection: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Raw reading documents of [low, high) ms ranges (each a few minutes or hours long),
    one query per (range, hour), run together."""
    queries = []
    for low, high in ranges:
        condition = {"$gte": from_millis(low), "$lt": from_millis(high)}
        for hour in range(low - low % HOUR_MS, high, HOUR_MS):
            query = await hour_filter(device_id, hour, condition)
            if query is not None:
                queries.append(query)
    collection = Reading.get_pymongo_collection()

    async def run(query: dict[str, Any]) -> list[dict[str, Any]]:
        return await collection.find(query, projection).to_list(None)

    found: list[dict[str, Any]] = []
    for docs in await asyncio.gather(*(run(q) for q in queries)):
        found += docs
    return found


async def _unapplied_hours(device_id: ObjectId, above: int) -> list[int]:
    """Hours (epoch ms) after `above` holding readings of the device whose latest value
    may not be applied yet: the write path's pending records name them until it is
    (ingest/rollups.mark, before the insert; unmark after latest values are set)."""
    hours = set()
    prefix = f"{device_id}:"
    async for record in RollupPending.get_pymongo_collection().find(
        {"hours": {"$regex": f"^{prefix}"}}, {"hours": 1}
    ):
        for key in record["hours"]:
            if key.startswith(prefix) and int(key[len(prefix) :]) > above:
                hours.add(int(key[len(prefix) :]))
    return sorted(hours, reverse=True)


async def newest_first(
    device_id: ObjectId,
    query: dict[str, Any],
    *,
    limit: int,
    newest: datetime | None,
) -> list[dict[str, Any]]:
    """Up to `limit` raw documents of `query` (the device's, with an optional `timestamp`
    range, possibly an `$lte` and a cursor's `$or`), newest first by (timestamp, _id),
    read an hour at a time from the newest hour that can hold one. `newest`: the
    device's latest reading's time (None: unknown, the whole page is one plain query)."""
    collection = Reading.get_pymongo_collection()
    timestamp: dict[str, datetime] = dict(query.get("timestamp", {}))
    rest = {k: v for k, v in query.items() if k not in ("device_id", "timestamp")}

    async def plain(before: int | None, need: int) -> list[dict[str, Any]]:
        condition = dict(timestamp)
        if before is not None:
            upper = millis(condition["$lt"]) if "$lt" in condition else before
            condition["$lt"] = from_millis(min(upper, before))
        find = {"device_id": device_id, **rest}
        if condition:
            find["timestamp"] = condition
        return list(await collection.find(find).sort(_SORT).limit(need).to_list(None))

    async def one_hour(hour: int, need: int) -> list[dict[str, Any]]:
        found = await hour_filter(device_id, hour, timestamp)
        if found is None:
            return []
        return list(await collection.find(found | rest).sort(_SORT).limit(need).to_list(None))

    if newest is None:
        return await plain(None, limit)
    since = await keyed_since()
    newest_hour = millis(newest) - millis(newest) % HOUR_MS
    upper: int | None = None  # the range's newest possible time, inclusive
    if "$lt" in timestamp:
        upper = millis(timestamp["$lt"]) - 1
    if "$lte" in timestamp:
        upper = (
            min(upper, millis(timestamp["$lte"]))
            if upper is not None
            else millis(timestamp["$lte"])
        )
    floor = millis(timestamp["$gte"]) if "$gte" in timestamp else None
    hour = newest_hour if upper is None else min(newest_hour, upper - upper % HOUR_MS)
    # The walk's first hour is read beside the pending records' lookup (one round trip's
    # wait less on every page): the newest `limit` of it, of which the walk takes what
    # the unapplied hours above leave to need.
    first: list[dict[str, Any]] | None = None
    if hour >= since and (floor is None or hour + HOUR_MS > floor):
        unapplied, first = await asyncio.gather(
            _unapplied_hours(device_id, newest_hour), one_hour(hour, limit)
        )
    else:
        unapplied = await _unapplied_hours(device_id, newest_hour)
    found: list[dict[str, Any]] = []
    for pending in unapplied:
        if pending < since:
            return await plain(None, limit)
        if len(found) < limit and (upper is None or pending <= upper):
            found += await one_hour(pending, limit - len(found))
    empty = 0
    while len(found) < limit:
        if floor is not None and hour + HOUR_MS <= floor:
            break
        if hour < since or empty >= EMPTY_HOURS:
            found += await plain(hour + HOUR_MS, limit - len(found))
            break
        if first is not None:
            docs, first = first[: limit - len(found)], None
        else:
            docs = await one_hour(hour, limit - len(found))
        found += docs
        empty = 0 if docs else empty + 1
        hour -= HOUR_MS
    return found
