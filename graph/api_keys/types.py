"""GraphQL types of API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Self

import strawberry

from models.api_keys import ApiKey as ApiKeyDocument
from models.api_keys import ApiKeyScope
from services.api_keys import CreatedApiKey

strawberry.enum(ApiKeyScope, description="What an API key may do (docs/access.md#api-keys).")


@strawberry.type(description="An API key; the key itself is shown only by createApiKey.")
class ApiKey:
    id: strawberry.ID
    name: str
    scopes: list[ApiKeyScope]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = strawberry.field(
        description="Updated at most once per API_KEY_LAST_USED_INTERVAL_SECONDS."
    )

    @classmethod
    def from_document(cls, key: ApiKeyDocument) -> Self:
        return cls(
            id=strawberry.ID(str(key.id)),
            name=key.name,
            scopes=list(key.scopes),
            created_at=key.created_at,
            expires_at=key.expires_at,
            last_used_at=key.last_used_at,
        )


@strawberry.type
class CreateApiKeyPayload:
    key: str = strawberry.field(description="The key, shown this once; only a hash is kept.")
    api_key: ApiKey

    @classmethod
    def from_created(cls, created: CreatedApiKey) -> Self:
        return cls(key=created.key, api_key=ApiKey.from_document(created.api_key))


@strawberry.input
class CreateApiKeyInput:
    name: str
    scopes: list[ApiKeyScope] = strawberry.field(description="At least one.")
    expires_in_days: int | None = strawberry.field(
        default=None, description="1..3650; omitted: the key does not expire."
    )
