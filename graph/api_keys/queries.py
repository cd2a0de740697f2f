"""Queries of the API keys domain."""

from __future__ import annotations

import strawberry

from graph.api_keys.types import ApiKey
from graph.context import Info
from services import api_keys


@strawberry.type
class ApiKeyQuery:
    @strawberry.field(description="The caller's own API keys, oldest first (never the key).")
    async def api_keys(self, info: Info) -> list[ApiKey]:
        viewer = await info.context.require_user()
        return [ApiKey.from_document(key) for key in await api_keys.list_api_keys(viewer)]
