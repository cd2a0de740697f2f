"""Device log payloads (ingest/log_lines.py): text or JSON in, one line or a drop reason out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from core.events import LogEvent
from ingest.log_lines import MAX_LOG_BYTES, parse_log, redact, split_level
from ingest.payloads import REASONS, Rejected
from models.device_logs import LogLevel
from services.credentials import derive_mqtt_password

ARRIVED = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
ARRIVED_MS = ARRIVED.replace(microsecond=123000)
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI2YjA0NDI0YyJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


def line(payload: bytes | str) -> tuple[datetime, LogLevel, str]:
    raw = payload.encode() if isinstance(payload, str) else payload
    parsed = parse_log(raw, ARRIVED)
    return parsed.timestamp, parsed.level, parsed.message


def reason(payload: bytes) -> str:
    with pytest.raises(Rejected) as rejected:
        parse_log(payload, ARRIVED)
    assert rejected.value.reason in REASONS
    return rejected.value.reason


def test_parse_log_plain_text_info_at_arrival() -> None:
    assert line("boot ok") == (ARRIVED_MS, LogLevel.INFO, "boot ok")


@pytest.mark.parametrize(
    ("text", "level", "message"),
    [
        ("ERROR: disk full", LogLevel.ERROR, "disk full"),
        ("error: disk full", LogLevel.ERROR, "disk full"),
        ("Warning: low battery", LogLevel.WARNING, "low battery"),
        ("[warn] low battery", LogLevel.WARNING, "low battery"),
        ("[DEBUG]: tick 5", LogLevel.DEBUG, "tick 5"),
        ("<crit> overheating", LogLevel.CRITICAL, "overheating"),
        ("FATAL out of memory", LogLevel.CRITICAL, "out of memory"),
        ("WARN  two spaces", LogLevel.WARNING, "two spaces"),
        ("trace: enter loop", LogLevel.DEBUG, "enter loop"),
        ("E (1234) wifi: connection lost", LogLevel.ERROR, "(1234) wifi: connection lost"),
        ("W (99) adc: clipped", LogLevel.WARNING, "(99) adc: clipped"),
        ("\x1b[0;32mI (320) boot: ready\x1b[0m\r\n", LogLevel.INFO, "(320) boot: ready"),
    ],
)
def test_parse_log_text_level_prefix_taken_off(text: str, level: LogLevel, message: str) -> None:
    assert line(text)[1:] == (level, message)


@pytest.mark.parametrize(
    "text",
    [
        "Error reading sensor 3",  # a sentence, not a level word: kept whole
        "errors: 3",
        "Note: calibrated",
        "I am awake",
        "http://example.com/fw.bin fetched",
        "ERROR:",  # nothing but the level word: the text as it is
        "OK done",
    ],
)
def test_parse_log_text_without_level_word_unchanged(text: str) -> None:
    assert line(text)[1:] == (LogLevel.INFO, text)


def test_parse_log_json_object_fields() -> None:
    payload = {"level": "warn", "msg": "low battery", "ts": 1767225600000, "battery": 3}
    assert line(json.dumps(payload)) == (
        datetime(2026, 1, 1, tzinfo=UTC),
        LogLevel.WARNING,
        "low battery",
    )
    payload = {"level": "ERROR", "message": "x", "timestamp": "2026-02-01 10:00:00.5"}
    assert line(json.dumps(payload)) == (
        datetime(2026, 2, 1, 10, 0, 0, 500000, tzinfo=UTC),
        LogLevel.ERROR,
        "x",
    )


def test_parse_log_json_object_message_over_msg_and_level_word() -> None:
    # No level field: the message's own prefix decides.
    assert line('{"message": "ERROR: bad", "msg": "ignored"}')[1:] == (LogLevel.ERROR, "bad")
    # A level field, even an unknown one, is the level: the text stays whole.
    assert line('{"level": "loud", "message": "ERROR: bad"}')[1:] == (LogLevel.INFO, "ERROR: bad")
    assert line('{"level": 40, "message": "x"}')[1:] == (LogLevel.INFO, "x")


def test_parse_log_json_object_without_message_other_fields_masked() -> None:
    payload = {"level": "info", "ts": 1767225600000, "rssi": -70, "jwt_token": JWT, "ApiKey": "k"}
    _, level, message = line(json.dumps(payload))
    assert level is LogLevel.INFO
    assert json.loads(message) == {"rssi": -70, "jwt_token": "***", "ApiKey": "***"}


def test_parse_log_json_object_extra_fields_never_stored() -> None:
    payload = {"message": "connected", "jwt_token": JWT, "password": "hunter22"}
    assert line(json.dumps(payload))[2] == "connected"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ('"boot ok"', "boot ok"),
        ('"[warn] quoted"', "quoted"),
        ("[1, 2, 3]", "[1, 2, 3]"),
        ("42", "42"),
        ("null", "null"),
        ('{"unterminated": ', '{"unterminated":'),
        ("[" * 10_000, "[" * 10_000),
    ],
)
def test_parse_log_json_not_object_its_text(payload: str, message: str) -> None:
    assert line(payload)[2] == message


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ('{"message": "x", "timestamp": 5}', "bad_timestamp"),
        ('{"message": "x", "ts": "soon"}', "bad_timestamp"),
        ('{"message": "x", "timestamp": "yesterday"}', "bad_timestamp"),
        ('{"message": "x", "ts": NaN}', "bad_timestamp"),
    ],
)
def test_reject_log_bad_time_as_readings_do(payload: str, why: str) -> None:
    assert reason(payload.encode()) == why


def test_reject_log_future_time() -> None:
    future = int((ARRIVED + timedelta(minutes=6)).timestamp() * 1000)
    assert reason(json.dumps({"message": "x", "ts": future}).encode()) == "future_timestamp"
    near = int((ARRIVED + timedelta(minutes=4)).timestamp() * 1000)
    assert line(json.dumps({"message": "x", "ts": near}))[0] > ARRIVED


def test_reject_log_over_16_kib_accept_at_limit() -> None:
    assert reason(b"x" * (MAX_LOG_BYTES + 1)) == "too_large"
    assert len(line(b"x" * MAX_LOG_BYTES)[2]) == MAX_LOG_BYTES


@pytest.mark.parametrize(
    "payload", [b"\xff\xfe boot", b"ok \xc3", b"\xed\xa0\x80", b'{"message": "\\ud800"}']
)
def test_reject_log_not_utf8(payload: bytes) -> None:
    assert reason(payload) == "bad_utf8"


@pytest.mark.parametrize("payload", [b"", b"   \r\n", b'""', b'{"message": " "}', b"{}"])
def test_reject_log_empty(payload: bytes) -> None:
    assert reason(payload) == "empty_log"


def test_redact_tokens_pairs_and_mqtt_passwords() -> None:
    password = derive_mqtt_password("k" * 32, "6b04424c61a616851779946e", 1)
    assert redact(f"using token {JWT} now") == "using token *** now"
    assert redact("password=hunter22 user=bob") == "password=*** user=bob"
    assert redact('cfg {"api_key": "abc123", "ssid": "home"}') == (
        'cfg {"api_key": "***", "ssid": "home"}'
    )
    assert redact(f"mqtt pass {password}.") == "mqtt pass ***."
    # Ordinary words and identifiers are left alone.
    plain = "sensor_reading_average_over_the_last_minute ok"
    assert redact(plain) == plain


def test_parse_log_masks_secret_in_text() -> None:
    assert line(f"ERROR: auth failed for {JWT}")[1:] == (LogLevel.ERROR, "auth failed for ***")


def test_split_level_reports_none_for_plain_text() -> None:
    assert split_level("hello world") == (None, "hello world")


def test_encode_log_event_round_trip() -> None:
    event = LogEvent("d1", "o1", ARRIVED_MS, "ERROR", "disk full ☃")
    assert LogEvent.decode(event.encode()) == event
