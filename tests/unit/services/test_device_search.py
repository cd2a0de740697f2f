"""models.name_search and services.device_search's filter: pure, no database."""

from __future__ import annotations

import re

import pytest
from bson import ObjectId

from models.devices import DeviceStatus
from models.name_search import name_keys, normalise, prefix_pattern
from services.device_search import DeviceFilter, filter_query, search_text
from services.errors import BadInput


def matches(name: str, search: str) -> bool:
    """What MongoDB answers for {search_keys: {$regex: pattern}}: any key matches."""
    pattern = re.compile(prefix_pattern(normalise(search)))
    return any(pattern.search(key) for key in name_keys(name))


def test_name_keys_one_per_word_start() -> None:
    assert name_keys("Greenhouse North-1") == ["greenhouse north-1", "north-1", "1"]
    assert name_keys("  Lab   Sensor\t2 ") == ["lab sensor 2", "sensor 2", "2"]
    assert name_keys("x") == ["x"]
    assert name_keys("") == []


def test_name_keys_leading_punctuation_keeps_whole_name() -> None:
    assert name_keys("#7 pump") == ["#7 pump", "7 pump", "pump"]


def test_name_keys_duplicates_once() -> None:
    assert name_keys("a a") == ["a a", "a"]
    assert name_keys("Ab ab") == ["ab ab", "ab"]


def test_normalise_case_folded_nfkc_spaces() -> None:
    assert normalise("  STRASSE\u00a0Nord ") == "strasse nord"
    assert normalise("Straße") == "strasse"
    assert normalise("\uff21\uff22\uff23") == "abc"  # full-width letters: NFKC


@pytest.mark.parametrize(
    ("name", "search"),
    [
        ("Greenhouse North 1", "green"),
        ("Greenhouse North 1", "GREENHOUSE"),
        ("Greenhouse North 1", "north"),
        ("Greenhouse North 1", "nOrTh 1"),
        ("Greenhouse North 1", "greenhouse   n"),
        ("Greenhouse North 1", "1"),
        ("lab-sensor_2", "sensor_2"),
        ("lab-sensor_2", "lab-s"),
        ("Straße 5", "STRASS"),
        ("a+b (test) [x]", "b (test) [x"),
        ("a+b (test) [x]", "test"),
        ("Dot.net*?", "net*?"),
    ],
)
def test_search_prefix_of_name_or_word_matches(name: str, search: str) -> None:
    assert matches(name, search)


@pytest.mark.parametrize(
    ("name", "search"),
    [
        ("Greenhouse North 1", "house"),
        ("Greenhouse North 1", "orth"),
        ("Greenhouse North 1", "north 2"),
        ("lab-sensor", "ensor"),
        ("a+b", "a.b"),  # regex characters are literal
        ("abc", ".*"),
        ("abc", "abcd"),
    ],
)
def test_search_inside_a_word_does_not_match(name: str, search: str) -> None:
    assert not matches(name, search)


def test_prefix_pattern_is_anchored() -> None:
    assert prefix_pattern("a b").startswith("^")
    assert re.compile(prefix_pattern("a.b")).search("axb") is None


def test_filter_query_each_filter_and_nothing_else() -> None:
    assert filter_query(DeviceFilter()) == {}
    query = filter_query(
        DeviceFilter(tag=" prod ", type=" esp32 ", status=DeviceStatus.ONLINE, search=" Green ")
    )
    assert query == {
        "tags": "prod",
        "type": "esp32",
        "status": "ONLINE",
        "search_keys": {"$regex": "^green"},
    }
    # No owner condition here: find_devices adds access.visible_filter last.
    assert "owner_id" not in query


def test_filter_query_blank_search_matches_all() -> None:
    assert filter_query(DeviceFilter(search="   ")) == {}
    assert filter_query(DeviceFilter(search="")) == {}


@pytest.mark.parametrize(
    ("device_filter", "field"),
    [
        (DeviceFilter(tag="two words"), "filter.tag"),
        (DeviceFilter(tag=""), "filter.tag"),
        (DeviceFilter(type="  "), "filter.type"),
        (DeviceFilter(type="t" * 65), "filter.type"),
        (DeviceFilter(search="s" * 101), "filter.search"),
        (DeviceFilter(search="bell\x07"), "filter.search"),
        (DeviceFilter(search="lone \ud800"), "filter.search"),
        (DeviceFilter(type="lone \ud800"), "filter.type"),
        (DeviceFilter(organization_id="not-an-id"), "filter.organizationId"),
    ],
)
def test_filter_query_bad_input(device_filter: DeviceFilter, field: str) -> None:
    with pytest.raises(BadInput) as caught:
        filter_query(device_filter)
    assert caught.value.field == field


def test_filter_query_organization_narrows_by_organization_id() -> None:
    query = filter_query(DeviceFilter(organization_id="665f1c2e8b3f4a0012345678", tag="prod"))
    assert query == {"organization_id": ObjectId("665f1c2e8b3f4a0012345678"), "tags": "prod"}


def test_filter_query_organization_bad_id() -> None:
    with pytest.raises(BadInput) as caught:
        filter_query(DeviceFilter(organization_id="nope"))
    assert caught.value.field == "filter.organizationId"


def test_search_text_whitespace_is_not_a_control_character() -> None:
    assert search_text("a\tb\nc") == "a b c"
