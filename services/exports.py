"""Readings exported as CSV or JSON Lines, streamed oldest first in constant memory.

The range is read in keyset pages on the time, each page a cursor of EXPORT_FETCH
documents per round trip; this process never holds more than about that many,
whatever the range. CSV has one row per metric value (`timestamp,metric,
value,unit`); JSON Lines one reading object per line in the telemetry format of
contract/devices.md, so an export can be imported again as it is.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import orjson
from bson import ObjectId

from models.accounts import User
from models.readings import Reading
from services.devices import get_device
from services.errors import BadInput
from services.validation import ensure_found

type Format = Literal["csv", "jsonl"]
FORMATS: Final[tuple[Format, ...]] = ("csv", "jsonl")
CSV_HEADER: Final = ("timestamp", "metric", "value", "unit")
# Readings per keyset page (one sorted query) and per round trip within it.
EXPORT_PAGE: Final = 20_000
EXPORT_FETCH: Final = 1000
_FIELDS: Final = {"timestamp": 1, "values": 1}


def parse_format(value: str | None) -> Format:
    """`csv` (the default) or `jsonl`; BadInput otherwise."""
    text = (value or "csv").lower()
    for known in FORMATS:
        if text == known:
            return known
    raise BadInput("format", "must be csv or jsonl")


def parse_time(value: str | None, *, field: str) -> datetime | None:
    """An ISO 8601 time (UTC when zoneless), None when absent; BadInput when malformed."""
    if value is None or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as err:
        raise BadInput(field, "not an ISO 8601 time") from err
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def iso(moment: datetime) -> str:
    """`2026-12-07T03:15:56.811Z`: UTC, milliseconds (what MongoDB keeps)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def encode_csv(documents: list[dict[str, Any]], *, header: bool = False) -> bytes:
    """CSV rows of reading documents, one per metric value."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    if header:
        writer.writerow(CSV_HEADER)
    for doc in documents:
        stamp = iso(doc["timestamp"])
        writer.writerows(
            (stamp, value["metric"], repr(float(value["value"])), value.get("unit") or "")
            for value in doc["values"]
        )
    return text.getvalue().encode()


def encode_jsonl(documents: list[dict[str, Any]]) -> bytes:
    """One telemetry reading object per line."""
    lines = []
    for doc in documents:
        reading: dict[str, Any] = {"timestamp": iso(doc["timestamp"])}
        for value in doc["values"]:
            unit = value.get("unit")
            number = float(value["value"])
            reading[value["metric"]] = {"value": number, "unit": unit} if unit else number
        lines.append(orjson.dumps(reading))
    lines.append(b"")
    return b"\n".join(lines)


@dataclass(frozen=True, slots=True)
class Export:
    """A checked export: who may see it was decided before the first byte."""

    device_id: ObjectId
    start: datetime | None
    end: datetime | None
    format: Format

    @property
    def media_type(self) -> str:
        return "text/csv; charset=utf-8" if self.format == "csv" else "application/x-ndjson"

    @property
    def filename(self) -> str:
        return f"readings-{self.device_id}.{self.format}"

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body: one chunk per round trip of readings."""
        if self.format == "csv":
            yield encode_csv([], header=True)
        async for batch in _batches(self.device_id, self.start, self.end):
            yield encode_csv(batch) if self.format == "csv" else encode_jsonl(batch)


async def open_export(
    viewer: User,
    device_id: str,
    *,
    start: datetime | None,
    end: datetime | None,
    format: Format,
) -> Export:
    """An export of a device the viewer may read; NotFound for another's device."""
    if start is not None and end is not None and start >= end:
        raise BadInput("from", "must be before to")
    device = await get_device(viewer, device_id)
    return Export(device_id=ensure_found(device.id, "Device"), start=start, end=end, format=format)


async def _batches(
    device_id: ObjectId, start: datetime | None, end: datetime | None
) -> AsyncIterator[list[dict[str, Any]]]:
    """The range's readings oldest first, EXPORT_FETCH at a time, page after page.

    Pages are sorted on the time alone, the order the (device, time) index gives
    (and half the stand-in's work of a (time, _id) sort). A page that fills up may end
    inside a group of readings of one time: that group is held back (a few readings:
    one time of one device) and read again at the start of the next page. A group
    larger than EXPORT_FETCH is read apart, in _id order (`_same_time`).
    """
    collection = Reading.get_pymongo_collection()
    lower, inclusive = start, True
    while True:
        timestamp: dict[str, Any] = {}
        if lower is not None:
            timestamp["$gte" if inclusive else "$gt"] = lower
        if end is not None:
            timestamp["$lt"] = end
        query: dict[str, Any] = {"device_id": device_id}
        if timestamp:
            query["timestamp"] = timestamp
        cursor = (
            collection.find(query, _FIELDS)
            .sort("timestamp", 1)
            .limit(EXPORT_PAGE)
            .batch_size(EXPORT_FETCH)
        )
        batch: list[dict[str, Any]] = []
        tail: list[dict[str, Any]] = []  # the readings of the latest time seen
        tail_time: datetime | None = None
        seen = 0
        crowded = False
        async for doc in cursor:
            seen += 1
            if doc["timestamp"] != tail_time:
                batch += tail
                tail, tail_time = [doc], doc["timestamp"]
                if len(batch) >= EXPORT_FETCH:
                    yield batch
                    batch = []
            else:
                tail.append(doc)
                if len(tail) > EXPORT_FETCH:
                    crowded = True
                    break
        if crowded and tail_time is not None:
            await cursor.close()
            if batch:
                yield batch
            async for group in _same_time(device_id, tail_time):
                yield group
            lower, inclusive = tail_time, False
            continue
        if seen < EXPORT_PAGE:
            batch += tail
            if batch:
                yield batch
            return
        if batch:
            yield batch
        # Full: the last time may go on past the page; read it again from there.
        lower, inclusive = tail_time, True


async def _same_time(device_id: ObjectId, moment: datetime) -> AsyncIterator[list[dict[str, Any]]]:
    """A device's readings of one time, EXPORT_FETCH at a time in _id order."""
    collection = Reading.get_pymongo_collection()
    after: ObjectId | None = None
    while True:
        query: dict[str, Any] = {"device_id": device_id, "timestamp": moment}
        if after is not None:
            query["_id"] = {"$gt": after}
        cursor = collection.find(query, _FIELDS).sort("_id", 1).limit(EXPORT_FETCH)
        group = [doc async for doc in cursor]
        if group:
            yield group
        if len(group) < EXPORT_FETCH:
            return
        after = group[-1]["_id"]
