"""Rollups of readings: per device and metric, count/min/max/sum per minute and per hour.

A document covers one coarse span and holds the finer buckets inside it: a `MinuteRollup`
is one hour of one (device, metric) with its minutes, an `HourRollup` one day with its
hours. So an aggregate over 30 days at 1 hour reads 30 documents, and a batch of
readings costs one upsert per (device, metric, hour) and per (device, metric, day).
The `_id` is `<device>:<metric>:<span start in epoch ms>`: upserts find their document
by `_id` alone. `version` grows with every change (services/rollups.rebuild uses it to
notice a concurrent increment). Written with the raw driver (ingest/rollups.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import ClassVar

import pymongo
from beanie import Document, PydanticObjectId
from pydantic import BaseModel, Field


class PartStats(BaseModel):
    count: int
    min: float
    max: float
    sum: float


class Rollup(Document):
    device_id: PydanticObjectId
    metric: str
    # Start of the span the document covers (an hour or a day, UTC).
    start: datetime
    # Also `count`, `min`, `max` and `sum` of the whole span, beside `parts` (named like
    # Beanie's own methods, so not declared here: the raw driver reads and writes them).
    version: int = 0
    # Finer buckets by their offset in the span: "k<minute>" or "k<hour>".
    parts: dict[str, PartStats] = Field(default_factory=dict)

    # The span a document covers and the bucket it holds inside it.
    span: ClassVar[timedelta]
    grain: ClassVar[timedelta]


_INDEXES = [
    pymongo.IndexModel(
        [
            ("device_id", pymongo.ASCENDING),
            ("metric", pymongo.ASCENDING),
            ("start", pymongo.ASCENDING),
        ]
    ),
    # The stand-in uses single-field equality indexes only: this bounds its finds by
    # the device.
    pymongo.IndexModel([("device_id", pymongo.ASCENDING)]),
    # The retention deleter's condition (services/retention.py).
    pymongo.IndexModel([("start", pymongo.ASCENDING)]),
]


class MinuteRollup(Rollup):
    span: ClassVar[timedelta] = timedelta(hours=1)
    grain: ClassVar[timedelta] = timedelta(minutes=1)

    class Settings:
        name = "rollups_minute"
        indexes = _INDEXES


class HourRollup(Rollup):
    span: ClassVar[timedelta] = timedelta(days=1)
    grain: ClassVar[timedelta] = timedelta(hours=1)

    class Settings:
        name = "rollups_hour"
        indexes = _INDEXES


ROLLUPS: tuple[type[Rollup], ...] = (MinuteRollup, HourRollup)


class RollupPending(Document):
    """Hours of devices whose readings were being stored and rolled up: written before
    the readings, deleted once their rollups are applied. One left behind (a crash, a
    failed write) names the hours services/rollups.repair_pending rebuilds from raw."""

    at: datetime
    # "<device id>:<hour start in epoch ms>"
    hours: list[str]

    class Settings:
        name = "rollup_pending"
