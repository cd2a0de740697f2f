"""services.twin_documents: RFC 7396 merge patch (the RFC's own examples), delta, rules."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from services.twin_documents import (
    MAX_DEPTH,
    InvalidDocument,
    check_document,
    check_patch,
    delta,
    encoded_size,
    merge_patch,
    same,
)

# RFC 7396, Appendix A: (original, patch, result), as JSON text.
RFC_7396_APPENDIX_A = [
    ('{"a":"b"}', '{"a":"c"}', '{"a":"c"}'),
    ('{"a":"b"}', '{"b":"c"}', '{"a":"b","b":"c"}'),
    ('{"a":"b"}', '{"a":null}', "{}"),
    ('{"a":"b","b":"c"}', '{"a":null}', '{"b":"c"}'),
    ('{"a":["b"]}', '{"a":"c"}', '{"a":"c"}'),
    ('{"a":"c"}', '{"a":["b"]}', '{"a":["b"]}'),
    ('{"a":{"b":"c"}}', '{"a":{"b":"d","c":null}}', '{"a":{"b":"d"}}'),
    ('{"a":[{"b":"c"}]}', '{"a":[1]}', '{"a":[1]}'),
    ('["a","b"]', '["c","d"]', '["c","d"]'),
    ('{"a":"b"}', '["c"]', '["c"]'),
    ('{"a":"foo"}', "null", "null"),
    ('{"a":"foo"}', '"bar"', '"bar"'),
    ('{"e":null}', '{"a":1}', '{"e":null,"a":1}'),
    ("[1,2]", '{"a":"b","c":null}', '{"a":"b"}'),
    ("{}", '{"a":{"bb":{"ccc":null}}}', '{"a":{"bb":{}}}'),
]


@pytest.mark.parametrize(("original", "patch", "result"), RFC_7396_APPENDIX_A)
def test_merge_patch_rfc_7396_appendix_a(original: str, patch: str, result: str) -> None:
    target = json.loads(original)
    before = copy.deepcopy(target)
    assert merge_patch(target, json.loads(patch)) == json.loads(result)
    assert target == before  # the target is not changed in place


def test_merge_patch_rfc_7396_section_3_example() -> None:
    original = {
        "title": "Goodbye!",
        "author": {"givenName": "John", "familyName": "Doe"},
        "tags": ["example", "sample"],
        "content": "This will be unchanged",
    }
    patch = {
        "title": "Hello!",
        "phoneNumber": "+01-123-456-7890",
        "author": {"familyName": None},
        "tags": ["example"],
    }
    assert merge_patch(original, patch) == {
        "title": "Hello!",
        "author": {"givenName": "John"},
        "tags": ["example"],
        "content": "This will be unchanged",
        "phoneNumber": "+01-123-456-7890",
    }


def test_merge_patch_nested_object_not_shared_with_patch() -> None:
    patch: dict[str, Any] = {"a": {"b": 1}}
    merged = merge_patch({}, patch)
    merged["a"]["b"] = 2
    assert patch == {"a": {"b": 1}}


@pytest.mark.parametrize(
    ("desired", "reported", "expected"),
    [
        ({}, {}, {}),
        ({"interval": 5}, {}, {"interval": 5}),
        ({"interval": 5}, {"interval": 5}, {}),
        ({"interval": 5}, {"interval": 5.0}, {}),  # one JSON number
        ({"on": True}, {"on": 1}, {"on": True}),  # true is not 1
        ({"interval": 5}, {"interval": 10, "uptime": 3}, {"interval": 5}),
        ({"led": {"color": "red", "level": 3}}, {"led": {"color": "red", "level": 1}},
         {"led": {"level": 3}}),
        ({"led": {"color": "red"}}, {"led": {"color": "red", "extra": 1}}, {}),
        ({"led": {"color": "red"}}, {"led": "off"}, {"led": {"color": "red"}}),
        ({"list": [1, {"a": 1}]}, {"list": [1, {"a": 1}]}, {}),
        ({"list": [1, 2]}, {"list": [2, 1]}, {"list": [1, 2]}),
        ({"a": {"b": {"c": 1}}}, {"a": {"b": {"c": 2}}}, {"a": {"b": {"c": 1}}}),
    ],
)  # fmt: skip
def test_delta_desired_against_reported(
    desired: dict[str, Any], reported: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert delta(desired, reported) == expected


def test_same_json_equality() -> None:
    assert same([1, {"a": 2.0}], [1.0, {"a": 2}])
    assert not same(False, 0)
    assert not same("1", 1)
    assert not same({"a": 1}, {"a": 1, "b": 2})


def test_check_document_valid_returned() -> None:
    document = {"a": {"b": [1, None, "x"]}, "n": 1.5, "ok": True}
    assert check_document(document, name="desired", max_bytes=1024) is document


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([1], "must be a JSON object"),
        ({"$set": 1}, "may not start with \\$"),
        ({"a.b": 1}, "may not start with"),
        ({"": 1}, "non-empty"),
        ({"a": {"b": None}}, "desired.a.b: null is not a value"),
        ({"big": 2**63}, "64 bits"),
        ({"nan": float("nan")}, "finite"),
        ({"x": {1, 2}}, "not a JSON value"),
        ({"s": "\ud800"}, "not encodable"),  # a lone surrogate: no UTF-8, no BSON
    ],
)
def test_check_document_invalid_named(document: Any, message: str) -> None:
    with pytest.raises(InvalidDocument, match=message):
        check_document(document, name="desired", max_bytes=1024)


def test_check_document_depth_limited() -> None:
    deep: dict[str, Any] = {}
    inner = deep
    for _ in range(MAX_DEPTH - 1):
        inner["k"] = {}
        inner = inner["k"]
    check_document(deep, name="d", max_bytes=1024)  # exactly MAX_DEPTH levels
    inner["k"] = {}
    with pytest.raises(InvalidDocument, match="levels"):
        check_document(deep, name="d", max_bytes=1024)


def test_check_document_size_counts_compact_utf8() -> None:
    document = {"s": "é" * 10}
    assert encoded_size(document) == len('{"s":""}') + 20
    check_document(document, name="d", max_bytes=encoded_size(document))
    with pytest.raises(InvalidDocument, match="at most 27 allowed"):
        check_document(document, name="d", max_bytes=27)


def test_check_patch_nulls_allowed_keys_checked() -> None:
    assert check_patch({"a": None, "b": {"c": None}}, name="patch") == {
        "a": None,
        "b": {"c": None},
    }
    with pytest.raises(InvalidDocument, match="JSON object"):
        check_patch("x", name="patch")
    with pytest.raises(InvalidDocument, match=r"patch\.b"):
        check_patch({"b": {"$x": 1}}, name="patch")
