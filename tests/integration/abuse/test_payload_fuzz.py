"""Property-based fuzzing of the device payload parsers, in-process (thousands of cases).

Whatever a device sends, parsing ends in readings the worker can store and publish,
or in `Rejected(reason)`: never in another exception, which would stop the worker.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import bson
from bson import ObjectId
from hypothesis import example, given
from hypothesis import strategies as st

from core.events import ReadingEvent
from core.topics import CONSUMED
from ingest.payloads import (
    MAX_FUTURE,
    MAX_METRICS_PER_READING,
    MAX_OTA_ERROR_LENGTH,
    MAX_PAYLOAD_BYTES,
    MAX_READINGS_PER_MESSAGE,
    MAX_UNIT_LENGTH,
    METRIC_NAME,
    OTA_STATES,
    REASONS,
    ParsedReading,
    Rejected,
    parse_ota_progress,
    parse_status,
    parse_telemetry,
    parse_topic,
)
from tests.integration.abuse.strategies import (
    ARRIVED,
    STRINGS,
    encode,
    fuzz_settings,
    status_payloads,
    telemetry_payloads,
    valid_reading,
)

DEVICE = ObjectId("6b04424c61a616851779946e")


def outcome_of_telemetry(payload: bytes) -> list[ParsedReading] | str:
    """The readings, or the reason of the rejection; any other exception fails the test."""
    try:
        return parse_telemetry(payload, ARRIVED)
    except Rejected as rejected:
        return rejected.reason


def assert_storable(readings: list[ParsedReading]) -> None:
    """What the contract promises about accepted readings, and that they encode."""
    assert 1 <= len(readings) <= MAX_READINGS_PER_MESSAGE
    for reading in readings:
        assert reading.timestamp.utcoffset() == timedelta(0)
        assert reading.timestamp - ARRIVED <= MAX_FUTURE
        assert reading.timestamp.microsecond % 1000 == 0
        assert 1 <= len(reading.values) <= MAX_METRICS_PER_READING
        for metric, value, unit in reading.values:
            assert METRIC_NAME.fullmatch(metric), metric
            assert isinstance(value, float) and math.isfinite(value)
            assert unit is None or (isinstance(unit, str) and 1 <= len(unit) <= MAX_UNIT_LENGTH)
        # The worker's stored document (BSON) and live event (JSON) of this reading.
        document = {
            "_id": ObjectId(),
            "device_id": DEVICE,
            "timestamp": reading.timestamp,
            "values": [{"metric": m, "value": v, "unit": u} for m, v, u in reading.values],
            "anomaly": False,
            "source": "0" * 32,
        }
        bson.encode(document)
        event = ReadingEvent(str(DEVICE), str(DEVICE), reading.timestamp, False, reading.values)
        assert ReadingEvent.decode(event.encode()) == event


def assert_accepted_or_rejected(payload: bytes) -> None:
    outcome = outcome_of_telemetry(payload)
    if isinstance(outcome, str):
        assert outcome in REASONS, outcome
    else:
        assert_storable(outcome)


@fuzz_settings(800)
@given(payload=telemetry_payloads())
# Found by this test: both escaped the parser and stopped the worker.
@example(payload=b'{"0": 0, "timestamp": "0001-01-01T00:00:00+01:00"}')
@example(payload=b'{"t": {"value": 1, "unit": "\\ud800"}}')
def test_parse_telemetry_any_payload_storable_or_rejected(payload: bytes) -> None:
    assert_accepted_or_rejected(payload)
    # Cut short too, as a truncated packet would arrive: 16 cases more without a draw.
    for end in range(0, len(payload), max(len(payload) // 16, 1)):
        assert_accepted_or_rejected(payload[:end])
    assert outcome_of_telemetry(payload.ljust(MAX_PAYLOAD_BYTES + 1)) == "too_large"


# ------------------------------------------------------------ valid readings, exactly


@fuzz_settings(400)
@given(
    readings=st.lists(valid_reading(), min_size=1, max_size=3),
    as_array=st.booleans(),
)
def test_parse_telemetry_valid_readings_read_exactly(
    readings: list[tuple[dict[str, Any], ParsedReading]], as_array: bool
) -> None:
    if as_array or len(readings) > 1:
        payload = encode([reading for reading, _ in readings])
        expected = [parsed for _, parsed in readings]
    else:
        payload = encode(readings[0][0])
        expected = [readings[0][1]]
    assert parse_telemetry(payload, ARRIVED) == expected


# ------------------------------------------------------------ status and topics


@fuzz_settings(600)
@given(payload=status_payloads())
def test_parse_status_any_payload_boolean_or_rejected(payload: bytes) -> None:
    try:
        online = parse_status(payload)
    except Rejected as rejected:
        assert rejected.reason in {"bad_status", "too_large"}
    else:
        assert isinstance(online, bool)


# The consumed kinds with a fixed suffix, from the one registry (core.topics).
KINDS = {kind.suffix: kind.name for kind in CONSUMED if "{" not in kind.suffix}
HEX_IDS = st.text("0123456789abcdef", min_size=24, max_size=24)
ANY_JSON = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), STRINGS, st.lists(st.integers())
)
OTA_DOCUMENTS = st.fixed_dictionaries(
    {},
    optional={
        "updateId": st.one_of(HEX_IDS, ANY_JSON),
        "state": st.one_of(
            st.sampled_from(sorted(OTA_STATES)), ANY_JSON, st.dictionaries(STRINGS, ANY_JSON)
        ),
        "progress": st.one_of(st.integers(min_value=-5, max_value=105), st.floats(), ANY_JSON),
        "error": st.one_of(STRINGS, st.text(min_size=490, max_size=510), ANY_JSON),
    },
)


@fuzz_settings(500)
@given(payload=st.one_of(OTA_DOCUMENTS.map(encode), st.binary(max_size=64)))
# Found by this test: a TypeError out of the parser, which stopped the worker.
@example(payload=b'{"updateId": "000000000000000000000000", "state": []}')
def test_parse_ota_progress_any_payload_progress_or_rejected(payload: bytes) -> None:
    try:
        progress = parse_ota_progress(payload)
    except Rejected as rejected:
        assert rejected.reason in {"bad_ota_progress", "too_large"}
    else:
        assert ObjectId.is_valid(progress.update_id) and progress.state in OTA_STATES
        assert progress.progress is None or 0 <= progress.progress <= 100
        assert progress.error is None or (
            0 < len(progress.error) <= MAX_OTA_ERROR_LENGTH and progress.error.isprintable()
        )


@fuzz_settings(800)
@given(
    topic=st.one_of(
        STRINGS,
        st.builds(
            "devices/{}/{}".format,
            st.one_of(HEX_IDS, STRINGS),
            st.sampled_from([*KINDS, "ota", "twin/desired", "commands/x", "telemetry/x", "", "+"]),
        ),
    )
)
def test_parse_topic_any_topic_device_or_rejected(topic: str) -> None:
    try:
        parsed = parse_topic(topic)
    except Rejected as rejected:
        assert rejected.reason == "bad_topic"
    else:
        prefix = f"devices/{parsed.device_id}/"
        assert topic.startswith(prefix)
        assert parsed.kind == KINDS[topic.removeprefix(prefix)]
        assert ObjectId.is_valid(parsed.device_id) and parsed.device_id == parsed.device_id.lower()
