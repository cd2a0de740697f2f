"""History pages read an hour at a time (services/reading_hours.py) against the real
stack: page for page the same as the plain keyset query (services.keyset.time_page) on
random data with gaps from seconds to days, ties, ranges and cursors; readings of a
release before the key (no `hour`) still listed; hours whose latest value is not
applied yet (a pending record) still listed; a page of a dense history reads only the
hours it needs."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId

from ingest import rollups as write_side
from ingest.rollups import millis
from ingest.store import insert_readings
from models.devices import Device
from models.platform import Marker
from models.readings import Reading
from services import reading_hours
from services.keyset import TimePage, page_of, page_query, time_page
from services.reading_hours import KEYS_MARKER, forget_keyed_since, newest_first
from tests.integration.services.test_rollups import add_device

T0 = datetime(2026, 11, 2, 22, 0, tzinfo=UTC)
PREFIX = "r:"


def document(device_id: ObjectId, at: datetime, value: float) -> dict[str, Any]:
    return {
        "_id": ObjectId(),
        "device_id": device_id,
        "timestamp": at,
        "values": [{"metric": "t", "value": value, "unit": None}],
        "anomaly": False,
        "source": None,
    }


def random_history(device_id: ObjectId, rng: random.Random, count: int) -> list[dict[str, Any]]:
    """Bursts of readings separated by gaps of seconds to days, some at one time."""
    docs = []
    at = T0
    for n in range(count):
        gap = rng.choice([0, 1, 7, 59, 600, 3599, 3600, 7300, 3 * 3600 + 1, 86_400 * 2])
        at -= timedelta(seconds=gap, milliseconds=rng.choice([0, 0, 250]))
        docs.append(document(device_id, at, float(n)))
    rng.shuffle(docs)  # stored out of order: late readings
    return docs


async def hour_page(
    device_id: ObjectId,
    *,
    start: datetime | None,
    end: datetime | None,
    first: int,
    after: str | None,
) -> TimePage[Reading]:
    """services.readings.list_readings without the access check."""
    device = await Device.get(device_id)
    assert device is not None
    newest = device.latest_reading.timestamp if device.latest_reading else None
    query = page_query({"device_id": device_id}, prefix=PREFIX, start=start, end=end, after=after)
    found = await newest_first(device_id, query, limit=first + 1, newest=newest)
    return page_of([Reading.model_validate(doc) for doc in found], first, PREFIX)


async def all_pages(
    device_id: ObjectId, start: datetime | None, end: datetime | None, first: int
) -> list[list[ObjectId]]:
    """Every page, by hours and by the plain query, asserted equal page for page."""
    pages: list[list[ObjectId]] = []
    after = None
    while True:
        mine = await hour_page(device_id, start=start, end=end, first=first, after=after)
        plain = await time_page(
            Reading,
            {"device_id": device_id},
            prefix=PREFIX,
            start=start,
            end=end,
            first=first,
            after=after,
        )
        assert [r.id for r in mine.items] == [r.id for r in plain.items]
        assert mine.has_next_page == plain.has_next_page
        assert mine.cursors == plain.cursors
        pages.append([r.id for r in mine.items if r.id is not None])
        if not mine.has_next_page:
            return pages
        after = mine.cursors[-1]


async def test_pages_by_hour_same_as_plain_query_on_random_data() -> None:
    rng = random.Random(7)
    device_id = await add_device()
    docs = random_history(device_id, rng, 120)
    await insert_readings(docs, chunk_size=40)
    oldest = min(d["timestamp"] for d in docs)
    ranges: list[tuple[datetime | None, datetime | None]] = [(None, None)]
    for _ in range(4):
        low = oldest + (T0 - oldest) * rng.random()
        high = low + timedelta(hours=rng.choice([1, 5, 30, 400]))
        ranges += [(low, high), (low, None), (None, high)]
    for start, end in ranges:
        for first in (4, 50):
            pages = await all_pages(device_id, start, end, first)
            listed = [i for page in pages for i in page]
            assert len(listed) == len(set(listed))  # each once
            inside = [
                d["_id"]
                for d in docs
                if (start is None or d["timestamp"] >= start)
                and (end is None or d["timestamp"] < end)
            ]
            assert sorted(listed) == sorted(inside)


async def test_readings_before_the_key_listed() -> None:
    """A database of the previous release: its readings have no `hour`; the marker
    decided at first use reads them by device and time."""
    rng = random.Random(11)
    device_id = await add_device()
    legacy = random_history(device_id, rng, 40)
    await Reading.get_pymongo_collection().insert_many(legacy)  # as stored before: no key
    forget_keyed_since()
    since = await reading_hours.keyed_since()
    assert since > millis(datetime.now(UTC))  # the upgrade's grace
    # Then this release stores more (keyed), some in the same hours as the legacy ones.
    fresh = [document(device_id, T0 - timedelta(minutes=7 * k), float(k)) for k in range(30)]
    await insert_readings(fresh, chunk_size=100)
    pages = await all_pages(device_id, None, None, 9)
    assert sorted(i for page in pages for i in page) == sorted(d["_id"] for d in legacy + fresh)


async def test_walk_crosses_from_keyed_hours_to_legacy_ones() -> None:
    """Keyed hours from the marker's time on, read by key; older ones by device and time."""
    device_id = await add_device()
    since = T0 - timedelta(days=1, minutes=30)
    legacy = [document(device_id, since - timedelta(minutes=13 * k), -k) for k in range(1, 60)]
    await Reading.get_pymongo_collection().insert_many(legacy)
    keyed = [document(device_id, T0 - timedelta(minutes=17 * k), k) for k in range(100)]
    await insert_readings(keyed, chunk_size=100)
    await Marker.get_pymongo_collection().delete_many({"_id": KEYS_MARKER})
    await Marker(id=KEYS_MARKER, claimed_by="test", claimed_at=since).insert()
    forget_keyed_since()
    assert await reading_hours.keyed_since() == millis(since)
    for first in (4, 50):
        pages = await all_pages(device_id, None, None, first)
        assert sorted(i for page in pages for i in page) == sorted(d["_id"] for d in legacy + keyed)


async def test_fresh_database_reads_every_hour_by_key() -> None:
    device_id = await add_device()
    await insert_readings([document(device_id, T0, 1.0)], chunk_size=10)
    forget_keyed_since()
    assert await reading_hours.keyed_since() == 0  # no reading lacks its key
    stored = await Reading.get_pymongo_collection().find_one({"device_id": device_id})
    assert stored is not None
    assert stored["hour"] == f"{device_id}:{millis(T0)}"


async def test_hours_not_applied_yet_listed() -> None:
    """Readings stored in an hour after the device's latest value (the flush that moves
    it has not run, or the worker died before it) are on the first page."""
    device_id = await add_device()
    await insert_readings(
        [document(device_id, T0 + timedelta(minutes=k), float(k)) for k in range(5)],
        chunk_size=10,
    )
    later = [document(device_id, T0 + timedelta(hours=h), 100.0 + h) for h in (2, 5)]
    gather = write_side.Accumulator()  # gathered: applied at a flush that has not run
    await insert_readings(later, chunk_size=1, gather=gather)
    page = await hour_page(device_id, start=None, end=None, first=3, after=None)
    assert [r.timestamp.replace(tzinfo=UTC) for r in page.items] == [
        T0 + timedelta(hours=5),
        T0 + timedelta(hours=2),
        T0 + timedelta(minutes=4),
    ]
    # The latest applied hour (read beside the pending lookup) gives only what the
    # unapplied hours left to need: `limit` documents in all.
    query = page_query({"device_id": device_id}, prefix=PREFIX, start=None, end=None, after=None)
    found = await newest_first(device_id, query, limit=4, newest=T0 + timedelta(minutes=4))
    assert [d["timestamp"].replace(tzinfo=UTC) for d in found] == [
        T0 + timedelta(hours=5),
        T0 + timedelta(hours=2),
        T0 + timedelta(minutes=4),
        T0 + timedelta(minutes=3),
    ]
    await gather.flush()
    device = await Device.get(device_id)
    assert device is not None and device.latest_reading is not None
    assert device.latest_reading.timestamp.replace(tzinfo=UTC) == T0 + timedelta(hours=5)
    await all_pages(device_id, None, None, 2)


async def test_dense_history_page_reads_its_hours_only() -> None:
    """A device with readings every minute for hours: the first page names one hour
    per query (the `hour` key first, what the stand-in finds by its index)."""
    device_id = await add_device()
    docs = [document(device_id, T0 - timedelta(minutes=k), float(k)) for k in range(300)]
    await insert_readings(docs, chunk_size=1000)
    await reading_hours.keyed_since()  # decided before: its own query is not the page's
    seen: list[dict[str, Any]] = []
    collection = Reading.get_pymongo_collection()
    original = collection.find

    def recording(*args: Any, **kwargs: Any) -> Any:
        seen.append(args[0])
        return original(*args, **kwargs)

    collection.find = recording  # type: ignore[method-assign]
    try:
        device = await Device.get(device_id)
        assert device is not None and device.latest_reading is not None
        query = page_query(
            {"device_id": device_id}, prefix=PREFIX, start=None, end=None, after=None
        )
        found = await newest_first(
            device_id, query, limit=51, newest=device.latest_reading.timestamp
        )
    finally:
        del collection.find
    assert len(found) == 51
    assert [next(iter(q)) for q in seen] == ["hour"] * len(seen)
    assert len(seen) == 2  # T0's hour holds one reading (22:00), the one before 60
