"""A device's metadata: tags, attributes and location, checked and normalised.

Pure: no I/O. Every rule is in docs/devices.md; every failure is BadInput naming the
field (a JSON path inside `attributes`). An update is checked whole before anything is
written, so a bad field leaves every other one as it was.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, TypeIs

from services.errors import BadInput

MAX_TAGS: Final = 20
MAX_TAG_LENGTH: Final = 64
# Letters and digits of any script, `_` (all three: \w), and `. : / = -`; no spaces, so a
# tag list reads unambiguously as words in any client.
_TAG: Final = re.compile(r"[\w.:/=-]+")
MAX_ATTRIBUTE_DEPTH: Final = 16
MAX_ATTRIBUTE_KEY_LENGTH: Final = 128
# BSON stores integers as at most 64 bits.
_INT64: Final = range(-(2**63), 2**63)


class Keep(Enum):
    """An input field that was left out: its value stays as it is (null clears)."""

    KEEP = "keep"


KEEP: Final = Keep.KEEP


@dataclass(frozen=True, slots=True)
class LocationParts:
    """`location: {latitude, longitude}` as sent, each part a number, null or left out."""

    latitude: float | Keep | None = KEEP
    longitude: float | Keep | None = KEEP


@dataclass(frozen=True, slots=True)
class MetadataChange:
    """What an update asks for; KEEP leaves a field, None clears it."""

    tags: Sequence[str] | Keep | None = KEEP
    attributes: object = KEEP  # a JSON object, None, or KEEP
    location: LocationParts | Keep | None = KEEP


def normalise_tag(value: str, *, field: str = "tag") -> str:
    """One tag: trimmed, NFC, 1..MAX_TAG_LENGTH of letters, digits and `_ . : / = -`."""
    tag = unicodedata.normalize("NFC", value.strip())
    if not tag:
        raise BadInput(field, "must not be empty")
    if len(tag) > MAX_TAG_LENGTH:
        raise BadInput(field, f"must be at most {MAX_TAG_LENGTH} characters")
    if not _TAG.fullmatch(tag):
        raise BadInput(field, "only letters, digits and _ . : / = - (no spaces)")
    return tag


def normalise_tags(values: Sequence[str]) -> list[str]:
    """The tags, each normalised, duplicates dropped, first occurrence's order kept."""
    if len(values) > MAX_TAGS:
        raise BadInput("tags", f"at most {MAX_TAGS} tags, not {len(values)}")
    tags = (normalise_tag(value, field=f"tags[{i}]") for i, value in enumerate(values))
    return list(dict.fromkeys(tags))


def check_attributes(value: object, *, max_bytes: int) -> dict[str, Any]:
    """A JSON object of at most `max_bytes` as compact UTF-8, storable in MongoDB as is."""
    if not isinstance(value, dict):
        raise BadInput("attributes", "must be a JSON object")
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        # UnicodeEncodeError (a ValueError): a lone surrogate, which BSON cannot store.
        size = len(text.encode())
    except (TypeError, ValueError, RecursionError) as err:
        raise BadInput("attributes", "not JSON of finite numbers and valid text") from err
    if size > max_bytes:
        raise BadInput("attributes", f"must be at most {max_bytes} bytes as JSON, not {size}")
    _check_json(value, "attributes", 1)
    return value


def _check_json(value: object, path: str, depth: int) -> None:
    """MongoDB's limits inside the JSON: field names, integer width, nesting."""
    if isinstance(value, dict | list) and depth > MAX_ATTRIBUTE_DEPTH:
        raise BadInput(path, f"nested deeper than {MAX_ATTRIBUTE_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_key(key, path)
            _check_json(item, f"{path}.{key}", depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{path}[{i}]", depth + 1)
    elif isinstance(value, int) and not isinstance(value, bool) and value not in _INT64:
        raise BadInput(path, "integer out of the 64-bit range")


def _check_key(key: object, path: str) -> None:
    # "$" starts an operator and "." is a path separator in MongoDB queries and updates.
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_ATTRIBUTE_KEY_LENGTH:
        raise BadInput(path, f"keys must be 1 to {MAX_ATTRIBUTE_KEY_LENGTH} characters")
    if key.startswith("$") or "." in key or "\x00" in key:
        raise BadInput(f"{path}.{key}", 'a key must not start with "$" or contain "." or NUL')


def check_location(parts: LocationParts) -> dict[str, float] | Keep | None:
    """The location to store, None to clear, KEEP when neither part was sent.

    Both numbers set it; both null (or one null, one left out) clear it; a number
    without the other is refused.
    """
    latitude, longitude = parts.latitude, parts.longitude
    if latitude is KEEP and longitude is KEEP:
        return KEEP
    if _is_number(latitude) and _is_number(longitude):
        return {
            "latitude": _degrees(latitude, "location.latitude", 90),
            "longitude": _degrees(longitude, "location.longitude", 180),
        }
    if _is_number(latitude) or _is_number(longitude):
        raise BadInput("location", "latitude and longitude go together: give both or neither")
    return None


def _is_number(value: object) -> TypeIs[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _degrees(value: float, field: str, bound: int) -> float:
    if not math.isfinite(value) or not -bound <= value <= bound:
        raise BadInput(field, f"must be between -{bound} and {bound}")
    return float(value)


def metadata_updates(change: MetadataChange, *, attributes_max_bytes: int) -> dict[str, object]:
    """The fields to set for `change`, every one checked; {} when it asks for nothing."""
    updates: dict[str, object] = {}
    if not isinstance(change.tags, Keep):
        updates["tags"] = normalise_tags(change.tags) if change.tags is not None else []
    if change.attributes is not KEEP:
        updates["attributes"] = (
            check_attributes(change.attributes, max_bytes=attributes_max_bytes)
            if change.attributes is not None
            else {}
        )
    if change.location is None:
        updates["location"] = None
    elif not isinstance(change.location, Keep):
        location = check_location(change.location)
        if location is not KEEP:
            updates["location"] = location
    return updates
