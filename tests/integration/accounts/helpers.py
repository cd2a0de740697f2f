"""API keys made through the public API, and sessions that authenticate with them."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tests.client import Api
from tests.contract import op
from tests.factories import Session


async def create_key(
    api: Api, session: Session, scopes: list[str], *, expires_in_days: int | None = None
) -> tuple[str, dict[str, Any]]:
    """(the key, its apiKey node)."""
    result = await api.execute(
        op("CreateApiKey"),
        {"name": f"{'+'.join(scopes)} key", "scopes": scopes, "expiresInDays": expires_in_days},
        token=session.access_token,
    )
    payload = result.data["createApiKey"]
    return payload["key"], payload["apiKey"]


def with_key(session: Session, key: str) -> Session:
    """`session` authenticating with `key` instead of its access token."""
    return replace(session, access_token=key, refresh_token="")
