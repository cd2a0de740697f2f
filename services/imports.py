"""Readings imported from CSV or JSON Lines with their own timestamps (backfill).

The body is parsed as it arrives, a line at a time, and stored in batches through the
worker's write path (ingest.store.insert_readings), so whatever that path maintains
(rollups) follows imports too. Validation is the telemetry contract's
(ingest.payloads): a JSON Lines line is one telemetry message (a reading object or an
array of them); a CSV row `timestamp,metric,value[,unit]` is a reading object of one
metric, consecutive rows of one timestamp one reading. What breaks a rule is dropped
and counted by reason; the rest is stored. Besides the telemetry reasons:
`too_large` (a line over 64 KiB), `expired` (older than the device's retention: it
would be deleted at once) and `duplicate`.

Importing the same data twice stores it once: each reading carries a `source` key
derived from its device, time and values, and a batch skips the keys MongoDB holds.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from bson import ObjectId

from core.settings import ApiSettings
from ingest.payloads import (
    MAX_METRICS_PER_READING,
    MAX_PAYLOAD_BYTES,
    ParsedReading,
    Rejected,
    parse_reading,
    parse_telemetry,
)
from ingest.store import insert_readings
from models.accounts import User, utcnow
from models.devices import Device
from models.readings import Reading
from services.devices import get_device
from services.errors import BadInput
from services.exports import CSV_HEADER, Format
from services.retention import cutoff_for, effective_days
from services.validation import ensure_found

logger = logging.getLogger(__name__)

IMPORT_BATCH: Final = 1000
SOURCE_PREFIX: Final = "imp-"


@dataclass(slots=True)
class ImportResult:
    stored: int = 0
    dropped: Counter[str] = field(default_factory=Counter)


def source_of(device_id: ObjectId, reading: ParsedReading) -> str:
    """The same for the same reading of the same device, whichever file brings it."""
    digest = hashlib.sha256(f"{device_id}|{reading.timestamp.isoformat()}".encode())
    for metric, value, unit in reading.values:
        digest.update(f"|{metric}={value!r}{unit or ''}".encode())
    return SOURCE_PREFIX + digest.hexdigest()[:28]


async def lines_of(chunks: AsyncIterator[bytes], counts: Counter[str]) -> AsyncIterator[bytes]:
    """Non-empty lines of a streamed body; a line over MAX_PAYLOAD_BYTES is counted
    `too_large` and skipped without being held."""
    pending = bytearray()
    skipping = False
    async for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            if skipping:
                skipping = False
            elif len(pending) + end - start > MAX_PAYLOAD_BYTES:
                counts["too_large"] += 1
            else:
                pending += chunk[start:end]
                if line := bytes(pending).strip():
                    yield line
            pending.clear()
            start = end + 1
        if not skipping:
            pending += chunk[start:]
            if len(pending) > MAX_PAYLOAD_BYTES:
                counts["too_large"] += 1
                pending.clear()
                skipping = True
    if not skipping and (line := bytes(pending).strip()):
        yield line


def _csv_object(row: list[str]) -> tuple[str, dict[str, Any]]:
    """A CSV row as (its time cell, a telemetry reading object of its one metric)."""
    if len(row) < 3:
        raise Rejected("bad_shape")
    stamp, metric, raw = row[0].strip(), row[1].strip(), row[2].strip()
    unit = row[3].strip() if len(row) > 3 else ""
    value: Any = raw  # a string stays one: not a metric (telemetry's rule)
    with contextlib.suppress(ValueError):
        value = float(raw)
    reading: dict[str, Any] = {metric: {"value": value, "unit": unit} if unit else value}
    if stamp.isdigit():
        reading["ts"] = int(stamp)
    elif stamp:
        reading["timestamp"] = stamp
    return stamp, reading


async def parse_csv(
    lines: AsyncIterator[bytes], arrived: datetime, counts: Counter[str]
) -> AsyncIterator[ParsedReading]:
    """Readings of CSV lines (header first); rows of one time in a row make one reading."""
    header = True
    group_time: str | None = None
    group: dict[str, Any] = {}

    def flush() -> Iterator[ParsedReading]:
        if group:
            try:
                yield parse_reading(group, arrived)
            except Rejected as rejected:
                counts[rejected.reason] += len([k for k in group if k not in ("timestamp", "ts")])
            group.clear()

    async for line in lines:
        try:
            row = next(csv.reader([line.decode()]))
        except (UnicodeDecodeError, csv.Error, StopIteration):
            counts["bad_shape"] += 1
            continue
        if header:
            header = False
            if tuple(cell.strip().lower() for cell in row[:3]) != CSV_HEADER[:3]:
                raise BadInput("body", "CSV must start with the header timestamp,metric,value,unit")
            continue
        try:
            stamp, reading = _csv_object(row)
        except Rejected as rejected:
            counts[rejected.reason] += 1
            continue
        metric = next(iter(reading))
        if stamp != group_time or metric in group or len(group) > MAX_METRICS_PER_READING:
            for parsed in flush():
                yield parsed
            group_time = stamp
        group.update(reading)
    for parsed in flush():
        yield parsed


async def parse_jsonl(
    lines: AsyncIterator[bytes], arrived: datetime, counts: Counter[str]
) -> AsyncIterator[ParsedReading]:
    """Readings of JSON Lines, each line a telemetry message."""
    async for line in lines:
        try:
            readings = parse_telemetry(line, arrived)
        except Rejected as rejected:
            counts[rejected.reason] += 1
            continue
        for reading in readings:
            yield reading


async def import_readings(
    viewer: User,
    device_id: str,
    body: AsyncIterator[bytes],
    *,
    format: Format,
    settings: ApiSettings,
) -> ImportResult:
    """Store a file's readings for a device the viewer may change; NotFound for another's."""
    device = await get_device(viewer, device_id, action="write")
    stored_id = ensure_found(device.id, "Device")
    result = ImportResult()
    arrived = utcnow()
    oldest = cutoff_for(effective_days(device, settings), arrived)
    lines = lines_of(body, result.dropped)
    parse = parse_csv if format == "csv" else parse_jsonl
    batch: list[tuple[str, ParsedReading]] = []
    async for reading in parse(lines, arrived, result.dropped):
        if reading.timestamp < oldest:
            result.dropped["expired"] += 1
            continue
        batch.append((source_of(stored_id, reading), reading))
        if len(batch) >= IMPORT_BATCH:
            await _store(stored_id, batch, result)
            batch = []
    if batch:
        await _store(stored_id, batch, result)
    logger.info(
        "import for device %s: %d stored, dropped %s",
        device.id,
        result.stored,
        dict(result.dropped),
    )
    return result


async def _store(
    device_id: ObjectId, batch: list[tuple[str, ParsedReading]], result: ImportResult
) -> None:
    """Insert the batch's readings MongoDB does not hold yet."""
    times = [reading.timestamp for _, reading in batch]
    held = set(
        await Reading.get_pymongo_collection().distinct(
            "source",
            {
                "device_id": device_id,
                "timestamp": {"$gte": min(times), "$lte": max(times)},
                "source": {"$in": list({source for source, _ in batch})},
            },
        )
    )
    documents = []
    metrics: set[str] = set()
    for source, reading in batch:
        if source in held:
            result.dropped["duplicate"] += 1
            continue
        held.add(source)  # the same reading twice in one batch
        documents.append(
            {
                "_id": ObjectId(),
                "device_id": device_id,
                "timestamp": reading.timestamp,
                "values": [
                    {"metric": metric, "value": value, "unit": unit}
                    for metric, value, unit in reading.values
                ],
                "anomaly": False,
                "source": source,
            }
        )
        metrics.update(metric for metric, _, _ in reading.values)
    if not documents:
        return
    await insert_readings(documents, chunk_size=IMPORT_BATCH)
    result.stored += len(documents)
    # The device's metric names, as the worker keeps them (ingest/status.py).
    await Device.get_pymongo_collection().update_one(
        {"_id": device_id}, {"$addToSet": {"metrics": {"$each": sorted(metrics)}}}
    )
