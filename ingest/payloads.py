"""Device payloads parsed and checked exactly as contract/devices.md says.

Pure functions: bytes in, readings or a `Rejected(reason)` out. Nothing here
logs a payload: a device may put secrets in one (`jwt_token`, ...).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import orjson

from core.topics import CONSUMED, TopicKind

MAX_PAYLOAD_BYTES: Final = 64 * 1024
MAX_READINGS_PER_MESSAGE: Final = 1000
MAX_METRICS_PER_READING: Final = 100
MAX_FUTURE: Final = timedelta(minutes=5)
METRIC_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_UNIT_LENGTH: Final = 32
TIME_FIELDS: Final = frozenset({"timestamp", "ts"})

type Reason = Literal[
    "bad_topic",
    "unknown_device",
    "too_large",
    "bad_json",
    "bad_shape",
    "too_many_readings",
    "too_many_metrics",
    "bad_metric_name",
    "non_finite",
    "no_metrics",
    "bad_timestamp",
    "future_timestamp",
    "bad_status",
    "bad_ota_progress",
    "ota_unknown_update",
    "ota_wrong_device",
    "ota_backwards",
    "rate_limited",
    # device logs (ingest/logs.py)
    "bad_utf8",
    "empty_log",
    "log_retained",
    "bad_twin_reported",
    "twin_too_large",
    "twin_retained",
    "bad_command_result",
    "command_unknown",
    "command_wrong_device",
    "command_not_sent",
]

REASONS: Final[tuple[Reason, ...]] = (
    "bad_topic", "unknown_device", "too_large", "bad_json", "bad_shape", "too_many_readings",
    "too_many_metrics", "bad_metric_name", "non_finite", "no_metrics", "bad_timestamp",
    "future_timestamp", "bad_status",
    "bad_ota_progress", "ota_unknown_update", "ota_wrong_device", "ota_backwards",
    "rate_limited",
    "bad_utf8", "empty_log", "log_retained",
    "bad_twin_reported", "twin_too_large", "twin_retained",
    "bad_command_result", "command_unknown", "command_wrong_device", "command_not_sent",
)  # fmt: skip


class Rejected(Exception):
    """The message breaks a rule of the device contract; `reason` says which."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason)
        self.reason: Reason = reason


@dataclass(frozen=True, slots=True)
class ParsedReading:
    timestamp: datetime
    # (metric, value, unit), in payload order
    values: tuple[tuple[str, float, str | None], ...]


def _reject_constant(_name: str) -> float:
    # json accepts NaN/Infinity literals; the contract wants finite numbers only.
    raise Rejected("non_finite")


def _metric_value(raw: Any) -> tuple[float, str | None] | None:
    """A metric's value and unit, or None when the field is not a metric."""
    if isinstance(raw, bool):
        return (1.0 if raw else 0.0), None
    if isinstance(raw, int | float):
        number, unit = raw, None
    elif isinstance(raw, dict) and "value" in raw:
        number, unit_raw = raw["value"], raw.get("unit")
        if isinstance(number, bool):
            number = 1.0 if number else 0.0
        if not isinstance(number, int | float):
            return None
        unit = unit_raw[:MAX_UNIT_LENGTH] if isinstance(unit_raw, str) and unit_raw else None
        if unit is not None and not unit.isascii():
            try:
                unit.encode()
            except UnicodeEncodeError as err:
                # A lone surrogate escaped in the JSON text ("\\ud800"): not text that
                # MongoDB (UTF-8) could store, and the insert would fail, not the parse.
                raise Rejected("bad_json") from err
    else:
        return None  # strings, lists, other objects: ignored, never stored
    try:
        value = float(number)
    except OverflowError as err:  # an integer too large for a float
        raise Rejected("non_finite") from err
    if not math.isfinite(value):
        raise Rejected("non_finite")
    return value, unit


def _timestamp(reading: dict[str, Any], arrived: datetime) -> datetime:
    if "timestamp" in reading:
        raw = reading["timestamp"]
        if not isinstance(raw, str):
            raise Rejected("bad_timestamp")
        try:
            # ISO 8601, and "YYYY-MM-DD HH:MM:SS[.ffffff]" (fromisoformat takes both).
            when = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
        except ValueError as err:
            raise Rejected("bad_timestamp") from err
        try:
            when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
        except OverflowError as err:  # year 1 or 9999 shifted out of the calendar by its zone
            raise Rejected("bad_timestamp") from err
    elif "ts" in reading:
        raw = reading["ts"]
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            raise Rejected("bad_timestamp")
        try:
            when = datetime.fromtimestamp(raw / 1000, UTC)
        except (OverflowError, OSError, ValueError) as err:
            raise Rejected("bad_timestamp") from err
    else:
        return arrived
    if when - arrived > MAX_FUTURE:
        raise Rejected("future_timestamp")
    # MongoDB keeps milliseconds.
    return when.replace(microsecond=when.microsecond // 1000 * 1000)


def message_time(document: dict[str, Any], arrived: datetime) -> datetime:
    """A message's own time, by the rules of a reading's (`timestamp` or `ts`), or
    `arrived` without either; Rejected as a reading's would be."""
    return _timestamp(document, arrived)


def parse_reading(reading: Any, arrived: datetime) -> ParsedReading:
    """One reading object: its time and its metrics."""
    if not isinstance(reading, dict):
        raise Rejected("bad_shape")
    values: list[tuple[str, float, str | None]] = []
    for name, raw in reading.items():
        if name in TIME_FIELDS:
            continue
        metric = _metric_value(raw)
        if metric is None:
            continue
        if not METRIC_NAME.fullmatch(name):
            raise Rejected("bad_metric_name")
        values.append((name, metric[0], metric[1]))
        if len(values) > MAX_METRICS_PER_READING:
            raise Rejected("too_many_metrics")
    if not values:
        raise Rejected("no_metrics")
    return ParsedReading(timestamp=_timestamp(reading, arrived), values=tuple(values))


def _loads_lenient(payload: bytes) -> Any:
    try:
        return json.loads(payload, parse_constant=_reject_constant)
    except Rejected:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise Rejected("bad_json") from err


def parse_telemetry(payload: bytes, arrived: datetime) -> list[ParsedReading]:
    """A telemetry message: one reading object or an array of up to 1,000."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise Rejected("too_large")
    try:
        document = orjson.loads(payload)  # a tenth of json.loads' CPU
    except orjson.JSONDecodeError:
        # Not strict UTF-8 JSON (NaN, a BOM, 1e999, a lone surrogate...): the standard
        # parser decides, as it always did, with the contract's reason.
        document = _loads_lenient(payload)
    if isinstance(document, list):
        if not document:
            raise Rejected("no_metrics")
        if len(document) > MAX_READINGS_PER_MESSAGE:
            raise Rejected("too_many_readings")
        return [parse_reading(item, arrived) for item in document]
    return [parse_reading(document, arrived)]


def parse_status(payload: bytes) -> bool:
    """True for online, False for offline: `{"online": bool}` or the bare words."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise Rejected("too_large")
    text = payload.strip()
    if text in (b"online", b"offline"):
        return text == b"online"
    try:
        document = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise Rejected("bad_status") from err
    if isinstance(document, dict) and isinstance(document.get("online"), bool):
        return bool(document["online"])
    if document in ("online", "offline"):
        return bool(document == "online")
    raise Rejected("bad_status")


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    device_id: str
    kind: str  # a core.topics.TopicKind name


def _alternative(kind: TopicKind) -> str:
    # One named group per kind: the match's lastgroup is the kind, no second lookup.
    suffix = re.sub(r"\\\{[^}/]+\\\}", "[^/+#]+", re.escape(kind.suffix))
    return f"(?P<{kind.name}>{suffix})"


_TOPIC = re.compile(
    r"devices/([0-9a-f]{24})/(?:" + "|".join(_alternative(kind) for kind in CONSUMED) + ")"
)


def parse_topic(topic: str) -> DeviceTopic:
    """`devices/<24-hex id>/<suffix>` of a kind the worker consumes (core.topics)."""
    match = _TOPIC.fullmatch(topic)
    if match is None:
        raise Rejected("bad_topic")
    return DeviceTopic(device_id=match.group(1), kind=match.lastgroup)  # type: ignore[arg-type]


# --- OTA progress (devices/{id}/ota/progress, contract/devices.md)
OTA_STATES: Final = frozenset({"DOWNLOADING", "VERIFYING", "INSTALLING", "SUCCEEDED", "FAILED"})
OBJECT_ID: Final = re.compile(r"[0-9a-f]{24}")
MAX_OTA_ERROR_LENGTH: Final = 500


@dataclass(frozen=True, slots=True)
class OtaProgress:
    update_id: str
    state: str  # one of OTA_STATES
    progress: int | None  # 0..100
    error: str | None


def parse_ota_progress(payload: bytes) -> OtaProgress:
    """`{"updateId", "state", "progress"?, "error"?}`; anything else is `bad_ota_progress`."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise Rejected("too_large")
    try:
        document = json.loads(payload, parse_constant=_reject_constant)
    except Rejected:
        raise Rejected("bad_ota_progress") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise Rejected("bad_ota_progress") from err
    if not isinstance(document, dict):
        raise Rejected("bad_ota_progress")
    update_id, state = document.get("updateId"), document.get("state")
    if not isinstance(update_id, str) or not OBJECT_ID.fullmatch(update_id):
        raise Rejected("bad_ota_progress")
    if not isinstance(state, str) or state not in OTA_STATES:  # a list is unhashable
        raise Rejected("bad_ota_progress")
    progress = document.get("progress")
    if progress is not None:
        if isinstance(progress, bool) or not isinstance(progress, int | float):
            raise Rejected("bad_ota_progress")
        if not 0 <= progress <= 100:
            raise Rejected("bad_ota_progress")
        progress = int(progress)
    error = document.get("error")
    if error is not None and not isinstance(error, str):
        raise Rejected("bad_ota_progress")
    if error is not None:
        # Shown to admins: printable text only, bounded.
        error = "".join(ch for ch in error if ch.isprintable())[:MAX_OTA_ERROR_LENGTH] or None
    return OtaProgress(update_id=update_id, state=state, progress=progress, error=error)


# --- command results (devices/{id}/commands/{commandId}/result, contract/devices.md)
MAX_COMMAND_RESULT_BYTES: Final = 16 * 1024
MAX_COMMAND_ERROR_LENGTH: Final = 1000


@dataclass(frozen=True, slots=True)
class CommandResult:
    command_id: str  # as the topic names it (checked against the database)
    ok: bool
    result_json: str | None  # compact JSON text of `result` (ok only)
    error: str | None  # (not ok only)


def parse_command_result(topic: str, payload: bytes) -> CommandResult:
    """`{"ok": true, "result": <any JSON>}` or `{"ok": false, "error": "text"}`, at most
    16 KiB; anything else is `bad_command_result` (`too_large` over the size)."""
    if len(payload) > MAX_COMMAND_RESULT_BYTES:
        raise Rejected("too_large")
    try:
        document = json.loads(payload, parse_constant=_reject_constant)
    except Rejected:
        raise Rejected("bad_command_result") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise Rejected("bad_command_result") from err
    if not isinstance(document, dict) or not isinstance(document.get("ok"), bool):
        raise Rejected("bad_command_result")
    command_id = topic.split("/")[3]
    if document["ok"]:
        if "error" in document:
            raise Rejected("bad_command_result")
        try:
            result = orjson.dumps(document.get("result")).decode()
        except orjson.JSONEncodeError as err:  # an integer over 64 bits, nesting over 255
            raise Rejected("bad_command_result") from err
        return CommandResult(command_id=command_id, ok=True, result_json=result, error=None)
    error = document.get("error")
    if not isinstance(error, str) or "result" in document:
        raise Rejected("bad_command_result")
    # Shown to users: printable text only, bounded.
    error = "".join(ch for ch in error if ch.isprintable())[:MAX_COMMAND_ERROR_LENGTH]
    return CommandResult(command_id=command_id, ok=False, result_json=None, error=error)
