"""Cursor pagination over documents ordered by their ObjectId."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from beanie import Document, SortDirection
from bson import ObjectId
from bson.errors import InvalidId

from services.errors import BadInput

_CURSOR_PREFIX = "id:"


@dataclass(frozen=True, slots=True)
class Page[T]:
    items: list[T]
    cursors: list[str]
    has_next_page: bool
    # The number of all matches, counted when asked for (GraphQL's `totalCount`): a
    # count reads every match's index entry, the page only its own.
    count: Callable[[], Awaitable[int]]


def encode_cursor(object_id: ObjectId) -> str:
    """An opaque cursor for one position in an _id-ordered list."""
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{object_id}".encode()).decode()


def decode_cursor(cursor: str | None, *, field: str = "after") -> ObjectId | None:
    """The position a cursor names; BadInput when it was not made by encode_cursor."""
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode()
        if not text.startswith(_CURSOR_PREFIX):
            raise ValueError(text)
        return ObjectId(text.removeprefix(_CURSOR_PREFIX))
    except (ValueError, UnicodeError, binascii.Error, InvalidId) as err:
        raise BadInput(field, "malformed cursor") from err


def clamp_page_size(first: int | None, *, default: int, maximum: int) -> int:
    """`first` capped at the maximum; a negative one is refused."""
    if first is None:
        return default
    if first < 0:
        raise BadInput("first", "must not be negative")
    return min(first, maximum)


async def paginate[D: Document](
    model: type[D],
    filters: dict[str, Any],
    *,
    first: int,
    after: str | None,
    newest_first: bool,
) -> Page[D]:
    """One page of `model` matching `filters`, and how to count all the matches."""
    after_id = decode_cursor(after)
    query = dict(filters)
    if after_id is not None:
        query["_id"] = {"$lt" if newest_first else "$gt": after_id}
    direction = SortDirection.DESCENDING if newest_first else SortDirection.ASCENDING
    # One more than asked for tells whether there is a next page (also when first is 0).
    found = await model.find(query).sort([("_id", direction)]).limit(first + 1).to_list()
    items = found[:first]

    async def count() -> int:
        return await model.find(filters).count()

    return Page(
        items=items,
        cursors=[encode_cursor(ObjectId(str(item.id))) for item in items],
        has_next_page=len(found) > first,
        count=count,
    )
