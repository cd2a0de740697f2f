"""Device log lines (devices/{id}/logs, contract/devices.md): bytes in, one line out.

Pure functions. A payload is UTF-8, at most 16 KiB (else `bad_utf8`, `too_large`):

- a JSON object: `level`, `message` (or `msg`), `timestamp` (or `ts`) with a
  reading's time rules (ingest.payloads.message_time; a bad or future time is
  dropped as a reading's would be). Other fields are ignored, never stored, as in
  telemetry. Without a message, the other fields are the message (compact JSON),
  the values of secret-named ones (`token`, `password`, ...) masked.
- a JSON string: its value, read as plain text.
- anything else (plain text, JSON arrays and numbers, broken JSON): the text as
  published, at level INFO unless it starts with a level word: `ERROR:` / `warn:`
  (any case, with a colon), `[warn]`, `<error>`, an upper-case word and a space
  (`ERROR disk full`), or ESP-IDF's `E (1234) tag: ...`. The level word is taken off
  the message; colour escapes (ESP-IDF's) and trailing blanks are dropped.

Levels: DEBUG, INFO, WARNING, ERROR, CRITICAL, with the usual other names
(`trace`, `warn`, `err`, `fatal`, ...); an unknown level is INFO. A line with no text
left is `empty_log`. Secrets in the text are masked, best effort: JSON web tokens
(device and access tokens), `password=...`-style pairs, and device MQTT passwords
(43 characters of base64url). Nothing here logs a payload.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson

from core.logging import REDACTED
from ingest.payloads import Rejected, message_time
from models.device_logs import LogLevel

MAX_LOG_BYTES: Final = 16 * 1024

LEVEL_NAMES: Final[dict[str, LogLevel]] = {
    "trace": LogLevel.DEBUG,
    "verbose": LogLevel.DEBUG,
    "debug": LogLevel.DEBUG,
    "info": LogLevel.INFO,
    "notice": LogLevel.INFO,
    "warn": LogLevel.WARNING,
    "warning": LogLevel.WARNING,
    "err": LogLevel.ERROR,
    "error": LogLevel.ERROR,
    "crit": LogLevel.CRITICAL,
    "critical": LogLevel.CRITICAL,
    "fatal": LogLevel.CRITICAL,
    "alert": LogLevel.CRITICAL,
    "emerg": LogLevel.CRITICAL,
    "emergency": LogLevel.CRITICAL,
}
# ESP-IDF's log letters (esp_log.h): Error, Warning, Info, Debug, Verbose.
ESP_LEVELS: Final[dict[str, LogLevel]] = {
    "E": LogLevel.ERROR,
    "W": LogLevel.WARNING,
    "I": LogLevel.INFO,
    "D": LogLevel.DEBUG,
    "V": LogLevel.DEBUG,
}
MESSAGE_FIELDS: Final = ("message", "msg")
LEVEL_FIELDS: Final = frozenset({"level"})
TIME_FIELDS: Final = frozenset({"timestamp", "ts"})

_PREFIX: Final = re.compile(
    r"""\s*(?:
        \[(?P<bracket>[A-Za-z]{1,9})\]:?      # [warn] ...
      | <(?P<angle>[A-Za-z]{1,9})>:?          # <error> ...
      | (?P<esp>[EWIDV])(?=\s\(\d+\)\s)       # E (1234) wifi: ...   (ESP-IDF)
      | (?P<colon>[A-Za-z]{1,9}):             # ERROR: ... / warn: ...
      | (?P<caps>[A-Z]{1,9})(?=\s)            # ERROR disk full
    )\s*""",
    re.VERBOSE,
)
_COLOUR: Final = re.compile(r"\x1b\[[0-9;]*m")
_JWT: Final = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{8,}")
_SECRET_NAME: Final = r"(?:password|passwd|pwd|secret|token|api[_-]?key|authorization)"  # noqa: S105 - names to mask
_SECRET_PAIR: Final = re.compile(rf"(?i)(\b{_SECRET_NAME}\b\"?\s*[=:]\s*\"?)[^\s\",;&]+")
_SECRET_KEY: Final = re.compile(rf"(?i){_SECRET_NAME}")
# A device's MQTT password: 32 bytes in unpadded base64url (services.credentials), so a
# 43-character word; _password_like tells it from a long identifier.
_BASE64URL_RUN: Final = re.compile(r"[A-Za-z0-9_-]{43,}")
# Cheap tests first: a regex walks a 16 KiB line position by position (milliseconds).
_SECRET_HINTS: Final = ("pass", "pwd", "secret", "token", "key", "authorization")


@dataclass(frozen=True, slots=True)
class LogLine:
    timestamp: datetime
    level: LogLevel
    message: str


def level_named(name: object) -> LogLevel | None:
    """The level a name means (`warn`, `ERROR`, ...), None for anything else."""
    return LEVEL_NAMES.get(name.strip().lower()) if isinstance(name, str) else None


def split_level(text: str) -> tuple[LogLevel | None, str]:
    """The level a text starts with, and the text without it (unchanged without one)."""
    match = _PREFIX.match(text)
    if match is None:
        return None, text
    if esp := match.group("esp"):
        level: LogLevel | None = ESP_LEVELS[esp]
    else:
        word = next(w for w in match.group("bracket", "angle", "colon", "caps") if w)
        level = level_named(word)
    rest = text[match.end() :]
    if level is None or not rest:
        return None, text  # not a level word, or nothing but one: the text as it is
    return level, rest


def redact(text: str) -> str:
    """`text` with secret-looking parts masked (best effort: see the module's docstring)."""
    if "eyJ" in text:
        text = _JWT.sub(REDACTED, text)
    lowered = text.lower()
    if any(hint in lowered for hint in _SECRET_HINTS):
        text = _SECRET_PAIR.sub(lambda m: m.group(1) + REDACTED, text)
    if max(map(len, text.split()), default=0) >= 43:
        text = _BASE64URL_RUN.sub(_password_like, text)
    return text


def _password_like(match: re.Match[str]) -> str:
    # Exactly 43 (a longer run is something else); random base64url of this length has
    # digits and both cases, names rarely do.
    word = match.group()
    if len(word) != 43 or word.islower() or word.isupper():
        return word
    return REDACTED if any(c.isdigit() for c in word) else word


def _clean(text: str) -> str:
    return (_COLOUR.sub("", text) if "\x1b" in text else text).rstrip()


def _from_object(document: dict[str, Any], arrived: datetime) -> LogLine:
    timestamp = message_time(document, arrived)
    message = next((document[f] for f in MESSAGE_FIELDS if isinstance(document.get(f), str)), None)
    if message is None:
        rest = {
            key: REDACTED if _SECRET_KEY.search(key) else value
            for key, value in document.items()
            if key not in LEVEL_FIELDS and key not in TIME_FIELDS
        }
        message = orjson.dumps(rest).decode() if rest else ""
    message = _clean(message)
    level = level_named(document.get("level"))
    if level is None and "level" not in document:
        level, message = split_level(message)
    return LogLine(timestamp=timestamp, level=level or LogLevel.INFO, message=message)


def _from_text(text: str, arrived: datetime) -> LogLine:
    level, message = split_level(_clean(text))
    return LogLine(timestamp=arrived, level=level or LogLevel.INFO, message=message)


def _json(text: str) -> Any:
    """The JSON value of `text` when it is an object or a string, else None."""
    if not text.lstrip().startswith(("{", '"')):
        return None  # plain text, or JSON that is kept as its text anyway
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None  # not JSON after all: text


def parse_log(payload: bytes, arrived: datetime) -> LogLine:
    """One log message: its time, level and (masked) text."""
    if len(payload) > MAX_LOG_BYTES:
        raise Rejected("too_large")
    try:
        text = payload.decode()
    except UnicodeDecodeError as err:
        raise Rejected("bad_utf8") from err
    document = _json(text)
    if isinstance(document, dict):
        line = _from_object(document, arrived)
    elif isinstance(document, str):
        line = _from_text(document, arrived)
    else:
        line = _from_text(text, arrived)
    message = redact(line.message)
    if not message.strip():
        raise Rejected("empty_log")
    try:
        message.encode()
    except UnicodeEncodeError as err:
        # A lone surrogate escaped in the JSON ("\\ud800"): no UTF-8 for MongoDB to store.
        raise Rejected("bad_utf8") from err
    # MongoDB keeps milliseconds: the live event shows what deviceLogs will.
    timestamp = line.timestamp.replace(microsecond=line.timestamp.microsecond // 1000 * 1000)
    return LogLine(timestamp=timestamp, level=line.level, message=message)
