"""Mutations of the API keys domain (never allowed to an API key: services.api_keys)."""

from __future__ import annotations

import strawberry

from graph.api_keys.types import CreateApiKeyInput, CreateApiKeyPayload
from graph.context import Info
from services import api_keys


@strawberry.type
class ApiKeyMutation:
    @strawberry.mutation(description="A new API key of the caller's; the key is shown once.")
    async def create_api_key(self, info: Info, input: CreateApiKeyInput) -> CreateApiKeyPayload:
        viewer = await info.context.require_user()
        created = await api_keys.create_api_key(
            viewer,
            name=input.name,
            scopes=input.scopes,
            expires_in_days=input.expires_in_days,
            settings=info.context.settings,
        )
        return CreateApiKeyPayload.from_created(created)

    @strawberry.mutation(
        description="The key stops working at once; WebSockets opened with it close."
    )
    async def revoke_api_key(self, info: Info, id: strawberry.ID) -> bool:
        viewer = await info.context.require_user()
        await api_keys.revoke_api_key(viewer, id, bus=info.context.bus)
        return True
