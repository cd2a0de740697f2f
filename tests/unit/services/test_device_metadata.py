"""services.device_metadata: the pure rules of tags, attributes and location."""

from __future__ import annotations

import math
from typing import Any

import pytest

from services.device_metadata import (
    KEEP,
    MAX_ATTRIBUTE_DEPTH,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    LocationParts,
    MetadataChange,
    check_attributes,
    check_location,
    metadata_updates,
    normalise_tag,
    normalise_tags,
)
from services.errors import BadInput

LIMIT = 16 * 1024


def bad_field(call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(BadInput) as caught:
        call(*args, **kwargs)
    return caught.value.field


# ------------------------------------------------------------------ tags


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("prod", "prod"),
        ("  floor:2 \t", "floor:2"),
        ("Site/Berlin", "Site/Berlin"),  # case kept: the filter matches exactly
        ("env=prod", "env=prod"),
        ("v1.2-rc_3", "v1.2-rc_3"),
        ("größe", "größe"),
        ("cafe\u0301", "café"),  # NFC: one spelling per tag
        ("t" * MAX_TAG_LENGTH, "t" * MAX_TAG_LENGTH),
    ],
)
def test_normalise_tag_valid_trimmed_nfc(given: str, stored: str) -> None:
    assert normalise_tag(given) == stored


@pytest.mark.parametrize(
    "given",
    [
        "",
        "   ",
        "two words",
        "t" * (MAX_TAG_LENGTH + 1),
        "a,b",
        "semi;colon",
        "nul\x00",
        "tab\tin",
        "zero\u200bwidth",
        "lone\ud800",
        "quote'",
        "<b>",
        "#hash",
    ],
)
def test_normalise_tag_invalid_refused(given: str) -> None:
    assert bad_field(normalise_tag, given, field="tags[3]") == "tags[3]"


def test_normalise_tags_dedupes_keeping_first_order() -> None:
    assert normalise_tags(["b", " a", "b ", "c", "a"]) == ["b", "a", "c"]
    assert normalise_tags([]) == []


def test_normalise_tags_count_limit_inclusive() -> None:
    assert len(normalise_tags([f"t{i}" for i in range(MAX_TAGS)])) == MAX_TAGS
    assert bad_field(normalise_tags, [f"t{i}" for i in range(MAX_TAGS + 1)]) == "tags"


def test_normalise_tags_names_the_bad_index() -> None:
    with pytest.raises(BadInput) as caught:
        normalise_tags(["ok", "also-ok", "not ok"])
    assert caught.value.message.startswith("tags[2]:")


# ------------------------------------------------------------------ attributes


def test_check_attributes_kept_as_sent() -> None:
    value = {"serial": "A-17", "rack": {"row": 3, "slots": [1, 2.5, None, True]}, "": None}
    value.pop("")
    assert check_attributes(value, max_bytes=LIMIT) is value


@pytest.mark.parametrize("given", [[], [1], "text", 3, True, None])
def test_check_attributes_not_an_object_refused(given: object) -> None:
    assert bad_field(check_attributes, given, max_bytes=LIMIT) == "attributes"


def test_check_attributes_size_limit_compact_utf8_inclusive() -> None:
    # {"k":"..."} is 8 bytes around the string; "é" is 2 bytes in UTF-8.
    at_limit = {"k": "é" * ((LIMIT - 8) // 2)}
    assert check_attributes(at_limit, max_bytes=LIMIT) == at_limit
    over = {"k": "é" * ((LIMIT - 8) // 2) + "x"}
    with pytest.raises(BadInput) as caught:
        check_attributes(over, max_bytes=LIMIT)
    assert (
        caught.value.message
        == f"attributes: must be at most {LIMIT} bytes as JSON, not {LIMIT + 1}"
    )


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"$set": 1}, "attributes.$set"),
        ({"a.b": 1}, "attributes.a.b"),
        ({"outer": {"$where": "x"}}, "attributes.outer.$where"),
        ({"list": [{"x.y": 1}]}, "attributes.list[0].x.y"),
        ({"nul\x00": 1}, "attributes.nul\x00"),
        ({"": 1}, "attributes"),
        ({"k" * 129: 1}, "attributes"),
        ({"big": 2**63}, "attributes.big"),
        ({"small": -(2**63) - 1}, "attributes.small"),
    ],
)
def test_check_attributes_mongodb_unsafe_refused(given: dict[str, Any], field: str) -> None:
    assert bad_field(check_attributes, given, max_bytes=LIMIT) == field


def test_check_attributes_int64_bounds_accepted() -> None:
    value = {"max": 2**63 - 1, "min": -(2**63)}
    assert check_attributes(value, max_bytes=LIMIT) == value


@pytest.mark.parametrize("value", [{"k": "lone \ud800"}, {"\udfff": 1}])
def test_check_attributes_lone_surrogate_refused(value: dict[str, Any]) -> None:
    assert bad_field(check_attributes, value, max_bytes=LIMIT) == "attributes"


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_check_attributes_non_finite_refused(number: float) -> None:
    assert bad_field(check_attributes, {"x": [number]}, max_bytes=LIMIT) == "attributes"


def test_check_attributes_depth_limit_inclusive() -> None:
    def nested(levels: int) -> dict[str, Any]:
        value: dict[str, Any] = {}
        for _ in range(levels - 1):
            value = {"n": value}
        return value

    assert check_attributes(nested(MAX_ATTRIBUTE_DEPTH), max_bytes=LIMIT)
    assert bad_field(check_attributes, nested(MAX_ATTRIBUTE_DEPTH + 1), max_bytes=LIMIT).startswith(
        "attributes.n"
    )


# ------------------------------------------------------------------ location


@pytest.mark.parametrize(
    ("latitude", "longitude"),
    [(0, 0), (52.52, 13.405), (-90, -180), (90, 180), (-33.8688, 151.2093)],
)
def test_check_location_valid_pairs_stored_as_floats(latitude: float, longitude: float) -> None:
    stored = check_location(LocationParts(latitude, longitude))
    assert stored == {"latitude": float(latitude), "longitude": float(longitude)}
    assert isinstance(stored, dict)
    assert all(type(v) is float for v in stored.values())


@pytest.mark.parametrize(
    ("latitude", "longitude", "field"),
    [
        (90.0001, 0, "location.latitude"),
        (-91, 0, "location.latitude"),
        (0, 180.5, "location.longitude"),
        (0, -181, "location.longitude"),
        (math.nan, 0, "location.latitude"),
        (0, math.inf, "location.longitude"),
        (10, None, "location"),
        (None, 10, "location"),
        (10, KEEP, "location"),
        (KEEP, -10, "location"),
        (True, 0, "location"),  # a bool is not a number here
    ],
)
def test_check_location_invalid_refused(latitude: Any, longitude: Any, field: str) -> None:
    assert bad_field(check_location, LocationParts(latitude, longitude)) == field


def test_check_location_left_out_keeps_null_clears() -> None:
    assert check_location(LocationParts()) is KEEP
    assert check_location(LocationParts(None, None)) is None
    assert check_location(LocationParts(None, KEEP)) is None
    assert check_location(LocationParts(KEEP, None)) is None


# ------------------------------------------------------------------ one update


def test_metadata_updates_nothing_asked_nothing_set() -> None:
    assert metadata_updates(MetadataChange(), attributes_max_bytes=LIMIT) == {}
    change = MetadataChange(location=LocationParts())
    assert metadata_updates(change, attributes_max_bytes=LIMIT) == {}


def test_metadata_updates_null_clears_each_field() -> None:
    change = MetadataChange(tags=None, attributes=None, location=None)
    assert metadata_updates(change, attributes_max_bytes=LIMIT) == {
        "tags": [],
        "attributes": {},
        "location": None,
    }


def test_metadata_updates_values_normalised() -> None:
    change = MetadataChange(
        tags=[" a ", "b", "a"], attributes={"k": 1}, location=LocationParts(1.5, -2)
    )
    assert metadata_updates(change, attributes_max_bytes=LIMIT) == {
        "tags": ["a", "b"],
        "attributes": {"k": 1},
        "location": {"latitude": 1.5, "longitude": -2.0},
    }


def test_metadata_updates_one_bad_field_refuses_all() -> None:
    change = MetadataChange(tags=["fine"], attributes={"k": 1}, location=LocationParts(91, 0))
    assert bad_field(metadata_updates, change, attributes_max_bytes=LIMIT) == "location.latitude"
