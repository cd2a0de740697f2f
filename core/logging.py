"""Process logging: text or one JSON object per line (`LOG_FORMAT`), tagged with ids.

The API sets `request_id` for each HTTP request or WebSocket connection
(api/request_ids.py) and `operation_id`/`operation` for each GraphQL operation
(graph/operation_ids.py); every record logged while they are set carries them.
The values of the configured secrets (every `SecretStr` setting) are replaced by
`***` wherever they would appear, and access lines lose their query strings (a
GraphQL GET carries its variables there): a safety net, not a licence to log secrets.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any, Final

from pydantic import SecretStr

from core.settings import CommonSettings

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
operation_id: ContextVar[str | None] = ContextVar("operation_id", default=None)
operation_name: ContextVar[str | None] = ContextVar("operation_name", default=None)

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED: Final = "***"
# A caller's X-Request-ID is kept only when it is this tame (it ends up in every line).
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# Shorter values are not scrubbed: they would blank out ordinary words.
_MIN_SECRET_LENGTH: Final = 8
# Loggers that uvicorn would otherwise give handlers (and a format) of their own.
_SERVER_LOGGERS: Final = ("uvicorn", "uvicorn.error", "uvicorn.access")


def new_id() -> str:
    """A fresh request or operation id."""
    return uuid.uuid4().hex


def accepted_request_id(value: str | None) -> str:
    """The caller's request id when it is a tame token, a fresh one otherwise."""
    if value and _CLIENT_ID.fullmatch(value):
        return value
    return new_id()


def secret_values(settings: CommonSettings) -> list[str]:
    """The values of every secret setting, longest first."""
    values = [
        value.get_secret_value()
        for name in type(settings).model_fields
        if isinstance(value := getattr(settings, name), SecretStr)
    ]
    return sorted({v for v in values if len(v) >= _MIN_SECRET_LENGTH}, key=len, reverse=True)


class _Scrubber:
    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = tuple(secrets)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


def _ids() -> dict[str, str]:
    ids = {
        "request_id": request_id.get(),
        "operation_id": operation_id.get(),
        "operation": operation_name.get(),
    }
    return {key: value for key, value in ids.items() if value is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, ids, static fields, exc."""

    def __init__(
        self, *, static: Mapping[str, str] | None = None, secrets: Iterable[str] = ()
    ) -> None:
        super().__init__()
        self._static = dict(static or {})
        self._scrub = _Scrubber(secrets)

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        payload: dict[str, Any] = {
            "ts": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": self._scrub(record.getMessage()),
            **self._static,
            **_ids(),
        }
        if record.exc_info:
            payload["exc"] = self._scrub(self.formatException(record.exc_info))
        if record.stack_info:
            payload["stack"] = self._scrub(self.formatStack(record.stack_info))
        return json.dumps(payload, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The classic line, with `[request=... operation=...]` while they are set."""

    def __init__(self, *, secrets: Iterable[str] = ()) -> None:
        super().__init__(TEXT_FORMAT)
        self._scrub = _Scrubber(secrets)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if ids := _ids():
            line += " [" + " ".join(f"{key}={value}" for key, value in ids.items()) + "]"
        return self._scrub(line)


class QueryStringFilter(logging.Filter):
    """Drops the query string from uvicorn's access lines: a GraphQL GET carries the
    whole operation, variables included, and those may hold passwords or tokens."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # uvicorn.access: (client address, method, path with query, HTTP version, status)
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            path = args[2]
            if isinstance(path, str) and "?" in path:
                record.args = (*args[:2], path.split("?", 1)[0] + "?...", *args[3:])
        return True


def configure_logging(
    settings: CommonSettings,
    *,
    service: str,
    instance: str | None = None,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Send every record of the process to `stream` (stderr) in `settings.log_format`."""
    secrets = secret_values(settings)
    formatter: logging.Formatter
    if settings.log_format == "json":
        static = {"service": service} | ({"instance": instance} if instance else {})
        formatter = JsonFormatter(static=static, secrets=secrets)
    else:
        formatter = TextFormatter(secrets=secrets)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(QueryStringFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # Python warnings too, so that every line of the process is in the one format.
    logging.captureWarnings(True)
    for name in _SERVER_LOGGERS:
        server_logger = logging.getLogger(name)
        server_logger.handlers.clear()
        server_logger.propagate = True
    return handler


__all__ = [
    "JsonFormatter",
    "QueryStringFilter",
    "TextFormatter",
    "accepted_request_id",
    "configure_logging",
    "new_id",
    "operation_id",
    "operation_name",
    "request_id",
    "secret_values",
]
