"""The device contract's payload rules, one by one (no services needed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from ingest.payloads import (
    MAX_PAYLOAD_BYTES,
    Rejected,
    parse_status,
    parse_telemetry,
    parse_topic,
)

ARRIVED = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


def reasons_of(payload: bytes) -> str:
    with pytest.raises(Rejected) as rejected:
        parse_telemetry(payload, ARRIVED)
    return rejected.value.reason


def test_parse_seed_format_naive_timestamp_is_utc() -> None:
    [reading] = parse_telemetry(
        b'{"temperature": 87, "humidity": 99, "timestamp": "2023-03-29 13:15:56.811550"}', ARRIVED
    )
    assert reading.timestamp == datetime(2023, 3, 29, 13, 15, 56, 811000, tzinfo=UTC)
    assert reading.values == (("temperature", 87.0, None), ("humidity", 99.0, None))


def test_parse_iso_timestamp_with_zone_converted_to_utc() -> None:
    [reading] = parse_telemetry(b'{"t": 1, "timestamp": "2026-11-23T14:00:00+02:00"}', ARRIVED)
    assert reading.timestamp == datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_parse_epoch_millisecond_ts() -> None:
    [reading] = parse_telemetry(b'{"t": 1, "ts": 1700000000123}', ARRIVED)
    assert reading.timestamp == datetime.fromtimestamp(1_700_000_000.123, UTC)
    assert reading.values == (("t", 1.0, None),)  # ts is time, not a metric


def test_parse_without_time_uses_arrival() -> None:
    [reading] = parse_telemetry(b'{"t": 1}', ARRIVED)
    assert reading.timestamp == ARRIVED


def test_parse_value_unit_objects_and_booleans() -> None:
    [reading] = parse_telemetry(
        b'{"temp": {"value": 23.5, "unit": "\xc2\xb0C"}, "open": true, "closed": false}', ARRIVED
    )
    assert reading.values == (("temp", 23.5, "°C"), ("open", 1.0, None), ("closed", 0.0, None))


def test_ignore_strings_and_other_fields() -> None:
    payload = {"t": 2, "device_id": "abc", "jwt_token": "secret", "tags": [1, 2], "meta": {"a": 1}}
    [reading] = parse_telemetry(json.dumps(payload).encode(), ARRIVED)
    assert reading.values == (("t", 2.0, None),)


def test_parse_array_of_readings() -> None:
    readings = parse_telemetry(json.dumps([{"a": i} for i in range(1000)]).encode(), ARRIVED)
    assert [r.values[0][1] for r in readings] == [float(i) for i in range(1000)]


def test_accept_timestamp_just_under_five_minutes_ahead() -> None:
    ahead = (ARRIVED + timedelta(minutes=4, seconds=59)).isoformat()
    [reading] = parse_telemetry(json.dumps({"t": 1, "timestamp": ahead}).encode(), ARRIVED)
    assert reading.timestamp > ARRIVED


def test_accept_exactly_one_hundred_metrics_and_64_char_names() -> None:
    payload = {f"{'m' * 60}{i:03d}"[:64]: i for i in range(100)}
    [reading] = parse_telemetry(json.dumps(payload).encode(), ARRIVED)
    assert len(reading.values) == 100


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{", "bad_json"),
        (b"\xff", "bad_json"),
        (b"", "bad_json"),
        (b"42", "bad_shape"),
        (b'"text"', "bad_shape"),
        (b"[]", "no_metrics"),
        (b"[1]", "bad_shape"),
        (b"{}", "no_metrics"),
        (b'{"s": "x"}', "no_metrics"),
        (json.dumps([{"a": 1}] * 1001).encode(), "too_many_readings"),
        (json.dumps({f"m{i}": i for i in range(101)}).encode(), "too_many_metrics"),
        (b'{"a b": 1}', "bad_metric_name"),
        (json.dumps({"m" * 65: 1}).encode(), "bad_metric_name"),
        (b'{"$where": 1}', "bad_metric_name"),
        (b'{"a": NaN}', "non_finite"),
        (b'{"a": Infinity}', "non_finite"),
        (b'{"a": -Infinity}', "non_finite"),
        (b'{"a": 1e400}', "non_finite"),
        (b'{"a": {"value": 1e400}}', "non_finite"),
        (b'{"a": ' + b"9" * 400 + b"}", "non_finite"),
        (b'{"a": 1, "timestamp": "not a time"}', "bad_timestamp"),
        (b'{"a": 1, "timestamp": 12}', "bad_timestamp"),
        (b'{"a": 1, "ts": "12"}', "bad_timestamp"),
        (b'{"a": 1, "ts": true}', "bad_timestamp"),
        (b'{"a": 1, "ts": 1e300}', "bad_timestamp"),
        (b'{"a": 1, "timestamp": "2026-11-23T12:05:01Z"}', "future_timestamp"),
        (b'{"a": 1, "pad": "' + b"x" * MAX_PAYLOAD_BYTES + b'"}', "too_large"),
        (b"[" * 100_000 + b"]" * 100_000, "too_large"),
    ],
)
def test_reject_telemetry_by_reason(payload: bytes, reason: str) -> None:
    assert reasons_of(payload) == reason


def test_reject_deeply_nested_json_bad_json() -> None:
    assert reasons_of(b"[" * 30_000 + b"]" * 30_000) == "bad_json"


@pytest.mark.parametrize(
    ("payload", "online"),
    [
        (b'{"online": true}', True),
        (b'{"online": false}', False),
        (b"online", True),
        (b"offline", False),
        (b" offline\n", False),
        (b'"online"', True),
    ],
)
def test_parse_status_forms(payload: bytes, online: bool) -> None:
    assert parse_status(payload) is online


@pytest.mark.parametrize("payload", [b"on", b'{"online": "yes"}', b"{}", b"[]", b"\xff"])
def test_reject_status_bad_status(payload: bytes) -> None:
    with pytest.raises(Rejected) as rejected:
        parse_status(payload)
    assert rejected.value.reason == "bad_status"


@pytest.mark.parametrize(
    "topic",
    [
        "devices/123/telemetry",
        "devices/6b04424c61a616851779946e/diary",
        "x/6b04424c61a616851779946e/telemetry",
        "devices/6B04424C61A616851779946E/telemetry",
        "devices/6b04424c61a616851779946e/telemetry/x",
    ],
)
def test_reject_topic_bad_topic(topic: str) -> None:
    with pytest.raises(Rejected) as rejected:
        parse_topic(topic)
    assert rejected.value.reason == "bad_topic"


def test_parse_topic_device_and_kind() -> None:
    topic = parse_topic("devices/6b04424c61a616851779946e/status")
    assert (topic.device_id, topic.kind) == ("6b04424c61a616851779946e", "status")
