"""The partial aggregates of a chunk of readings, and their merge (pure, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId

from ingest.rollups import Summary, millis, rollup_update
from models.rollups import HourRollup, MinuteRollup

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
DEVICE = ObjectId()


def doc(at: datetime, **values: float) -> dict[str, Any]:
    return {
        "device_id": DEVICE,
        "timestamp": at,
        "values": [{"metric": m, "value": v} for m, v in values.items()],
    }


def test_summarize_chunk_per_hour_minute_and_day() -> None:
    summary = Summary.of(
        [
            doc(T0 + timedelta(minutes=1, seconds=5), t=2.0),
            doc(T0 + timedelta(minutes=1, seconds=50), t=4.0, h=1.0),
            doc(T0 + timedelta(hours=1, minutes=3), t=-1.0),
        ]
    )
    hour = summary.deltas[MinuteRollup][(DEVICE, "t", millis(T0))]
    assert hour.total == [2, 2.0, 4.0, 6.0]
    assert hour.parts == {1: [2, 2.0, 4.0, 6.0]}
    day = summary.deltas[HourRollup][(DEVICE, "t", millis(T0.replace(hour=0)))]
    assert day.total == [3, -1.0, 4.0, 5.0]
    assert day.parts == {10: [2, 2.0, 4.0, 6.0], 11: [1, -1.0, -1.0, -1.0]}
    assert (DEVICE, "h", millis(T0)) in summary.deltas[MinuteRollup]
    assert summary.latest[DEVICE]["timestamp"] == T0 + timedelta(hours=1, minutes=3)
    assert summary.hours() == [f"{DEVICE}:{millis(T0)}", f"{DEVICE}:{millis(T0) + 3_600_000}"]


def test_merge_summaries_keeps_newest_latest_and_adds_deltas() -> None:
    first = Summary.of([doc(T0 + timedelta(minutes=5), t=1.0)])
    late = Summary.of([doc(T0 + timedelta(minutes=5, seconds=1), t=3.0), doc(T0, t=9.0)])
    first.merge(late)
    hour = first.deltas[MinuteRollup][(DEVICE, "t", millis(T0))]
    assert hour.total == [3, 1.0, 9.0, 13.0]
    assert hour.parts == {5: [2, 1.0, 3.0, 4.0], 0: [1, 9.0, 9.0, 9.0]}
    assert first.latest[DEVICE]["timestamp"] == T0 + timedelta(minutes=5, seconds=1)


def test_rollup_update_increments_totals_and_parts() -> None:
    summary = Summary.of([doc(T0 + timedelta(minutes=7), t=2.5)])
    key = (DEVICE, "t", millis(T0))
    update = rollup_update(key, summary.deltas[MinuteRollup][key])
    # The span's start beside the `_id`: the stand-in's index for an upsert that misses.
    assert update._filter == {"_id": f"{DEVICE}:t:{millis(T0)}", "start": T0}
    body = update._doc
    assert body["$inc"] == {
        "count": 1,
        "sum": 2.5,
        "version": 1,
        "parts.k7.count": 1,
        "parts.k7.sum": 2.5,
    }
    assert body["$min"] == {"min": 2.5, "parts.k7.min": 2.5}
    assert body["$max"] == {"max": 2.5, "parts.k7.max": 2.5}
    assert body["$setOnInsert"] == {"device_id": DEVICE, "metric": "t"}
