"""`python -m api` behind a pretend reverse proxy: the tests' client is that proxy.

The API trusts forwarding headers from 127.0.0.1 only, so a test speaks as the proxy
and names the real client in X-Forwarded-For, as a proxy appending to it would.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from core.settings import Settings
from tests.client import Api
from tests.contract import op
from tests.processes import api_process

PROXY_ADDRESS = "127.0.0.1"


@asynccontextmanager
async def proxied_api(settings: Settings, **overrides: str) -> AsyncIterator[Api]:
    """The API as deployed behind a proxy at 127.0.0.1, with extra settings."""
    async with (
        api_process(settings, FORWARDED_ALLOW_IPS=PROXY_ADDRESS, **overrides) as url,
        Api(url) as api,
    ):
        yield api


def from_client(address: str, forged: str | None = None) -> dict[str, str]:
    """Headers of a request the proxy forwards from `address`, which wrote `forged`."""
    chain = f"{forged}, {address}" if forged else address
    return {"X-Forwarded-For": chain}


async def login(api: Api, email: str, password: str, headers: dict[str, str]) -> dict[str, Any]:
    response = await api.http.post(
        "/graphql",
        json={"query": op("Login"), "variables": {"email": email, "password": password}},
        headers=headers,
    )
    body: dict[str, Any] = response.json()
    return body


def code_of(body: dict[str, Any]) -> str | None:
    errors = body.get("errors") or []
    assert len(errors) <= 1, errors
    return errors[0]["extensions"]["code"] if errors else None


def retry_after(body: dict[str, Any]) -> int:
    """The wait a RATE_LIMITED answer names, in seconds."""
    match = re.search(r"try again in (\d+) s", body["errors"][0]["message"])
    assert match, body
    return int(match.group(1))
