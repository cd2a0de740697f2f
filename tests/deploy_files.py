"""Helpers for the deployment files' offline checks (tests/unit/test_compose.py, test_k8s.py):
which settings each process reads, RabbitMQ's config keys, the broker auth routes."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from pydantic import SecretStr

from api.broker_auth import broker_auth_routes
from core.settings import ApiSettings, WorkerSettings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
RABBITMQ_CONF = DEPLOY / "rabbitmq" / "rabbitmq.conf"
# The installed RabbitMQ's config schemas (Debian's 3.10.8; tests/rabbitmq.py runs it).
RABBITMQ_SCHEMAS = Path("/usr/lib/rabbitmq/lib")


def api_setting_names() -> set[str]:
    return {name.upper() for name in ApiSettings.model_fields}


def worker_setting_names() -> set[str]:
    return {name.upper() for name in WorkerSettings.model_fields}


def api_only_setting_names() -> set[str]:
    """What the API reads and a worker does not: never given to a worker."""
    return api_setting_names() - {name.upper() for name in WorkerSettings.model_fields}


def rabbitmq_directives(text: str) -> dict[str, str]:
    """rabbitmq.conf's `key = value` lines (comments and blanks skipped)."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a `key = value` line: {line!r}"
        found[key.strip()] = value.strip()
    return found


@cache
def rabbitmq_key_patterns() -> tuple[re.Pattern[str], ...]:
    """Every key the installed RabbitMQ's schemas map (`$name` segments match any)."""
    patterns = []
    for schema in RABBITMQ_SCHEMAS.glob("rabbitmq_server-*/plugins/*/priv/schema/*.schema"):
        for key in re.findall(r'\{mapping,\s*"([^"]+)"', schema.read_text(errors="replace")):
            regex = r"\.".join(
                r"[^.]+" if part.startswith("$") else re.escape(part) for part in key.split(".")
            )
            patterns.append(re.compile(regex))
    return tuple(patterns)


def broker_auth_paths(broker: str) -> set[str]:
    """The API's auth endpoints for `broker` ("rabbitmq", "emqx"; api/broker_auth.py)."""
    settings = ApiSettings.model_construct(broker_auth_secret=SecretStr("served"))
    return {route.path for route in broker_auth_routes(settings) if f"/{broker}/" in route.path}
