"""Keyset pages of time-stamped documents: newest first by (timestamp, _id), from/to bounds.

For collections read by time (readings, device logs): a cursor names the last item's
(timestamp, _id), so a page costs an index range scan however deep it is, and items
inserted meanwhile neither repeat nor shift the pages. The query fits an index on
(<owner field>, timestamp desc, _id desc).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from beanie import Document, SortDirection
from bson import ObjectId
from bson.errors import InvalidId

from services.errors import BadInput


class _Timed(Protocol):
    @property
    def timestamp(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class TimePage[T]:
    items: list[T]
    cursors: list[str]
    has_next_page: bool


def as_utc(moment: datetime) -> datetime:
    """`moment` as an aware UTC datetime; a naive one is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def encode_time_cursor(prefix: str, moment: datetime, object_id: object) -> str:
    """An opaque cursor for one item's position in (timestamp, _id) order."""
    millis = int(as_utc(moment).timestamp() * 1000)
    return base64.urlsafe_b64encode(f"{prefix}{millis}:{object_id}".encode()).decode()


def decode_time_cursor(prefix: str, cursor: str) -> tuple[datetime, ObjectId]:
    """The (timestamp, _id) a cursor names; BadInput when it was not made with `prefix`."""
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode()
        if not text.startswith(prefix):
            raise ValueError(text)
        millis, object_id = text.removeprefix(prefix).split(":")
        moment = datetime.fromtimestamp(int(millis) / 1000, tz=UTC)
        return moment, ObjectId(object_id)
    except (ValueError, UnicodeError, binascii.Error, InvalidId, OverflowError, OSError) as err:
        raise BadInput("after", "malformed cursor") from err


def time_range(start: datetime | None, end: datetime | None) -> dict[str, datetime]:
    """The `timestamp` condition of [start, end); BadInput when it is empty."""
    condition: dict[str, datetime] = {}
    if start is not None:
        condition["$gte"] = as_utc(start)
    if end is not None:
        condition["$lt"] = as_utc(end)
    if start is not None and end is not None and condition["$gte"] >= condition["$lt"]:
        raise BadInput("from", "must be before to")
    return condition


def page_query(
    filters: dict[str, Any],
    *,
    prefix: str,
    start: datetime | None,
    end: datetime | None,
    after: str | None,
) -> dict[str, Any]:
    """The filter of a page's items: `filters`, [start, end), after the cursor."""
    timestamp = time_range(start, end)
    query = dict(filters)
    if after is not None:
        moment, object_id = decode_time_cursor(prefix, after)
        # The plain bound narrows the index range (and lets a time series skip whole
        # buckets); the $or breaks timestamp ties.
        timestamp["$lte"] = moment
        query["$or"] = [
            {"timestamp": {"$lt": moment}},
            {"timestamp": moment, "_id": {"$lt": object_id}},
        ]
    if timestamp:
        query["timestamp"] = timestamp
    return query


def page_of[T](found: list[T], first: int, prefix: str) -> TimePage[T]:
    """The page of `first + 1` items found newest first (the last says there is more)."""
    items = found[:first]
    return TimePage(
        items=items,
        cursors=[
            encode_time_cursor(prefix, cast(_Timed, item).timestamp, cast(Any, item).id)
            for item in items
        ],
        has_next_page=len(found) > first,
    )


async def time_page[D: Document](
    model: type[D],
    filters: dict[str, Any],
    *,
    prefix: str,
    start: datetime | None,
    end: datetime | None,
    first: int,
    after: str | None,
) -> TimePage[D]:
    """One page of `model` matching `filters` in [start, end), newest first."""
    query = page_query(filters, prefix=prefix, start=start, end=end, after=after)
    # One more than asked for tells whether there is a next page.
    found = (
        await model.find(query)
        .sort([("timestamp", SortDirection.DESCENDING), ("_id", SortDirection.DESCENDING)])
        .limit(first + 1)
        .to_list()
    )
    return page_of(found, first, prefix)
