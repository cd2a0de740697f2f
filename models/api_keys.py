"""API keys: long-lived, scoped credentials a user makes for scripts and gateways."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

import pymongo
from beanie import Document, Indexed, PydanticObjectId
from pydantic import Field

from models.accounts import utcnow

# Expired keys stay listed (as expired) this long, then MongoDB deletes them (TTL).
EXPIRED_KEPT_SECONDS = 30 * 86400


class ApiKeyScope(StrEnum):
    """READ: queries and subscriptions. WRITE: READ and the mutations of
    services.api_keys.WRITE_MUTATIONS. INGEST: the HTTP telemetry and import endpoints."""

    READ = "READ"
    WRITE = "WRITE"
    INGEST = "INGEST"


class ApiKey(Document):
    """One key. The secret itself is never stored: `secret_hash` is the SHA-256 of the
    whole key, `lookup_id` (also inside the key, not secret) finds the document."""

    user_id: PydanticObjectId
    # Organizations (issue 16, later): the owning organization; None until they exist.
    organization_id: PydanticObjectId | None = None
    name: str
    scopes: list[ApiKeyScope]
    lookup_id: Annotated[str, Indexed(unique=True)]
    secret_hash: str
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    last_used_at: datetime | None = None

    class Settings:
        name = "api_keys"
        indexes = [
            # apiKeys and the per-user quota: one user's keys, oldest first.
            pymongo.IndexModel(
                [("user_id", pymongo.ASCENDING), ("created_at", pymongo.ASCENDING)],
                name="user_created",
            ),
            # Keys without expires_at never expire (a TTL index skips them).
            pymongo.IndexModel(
                [("expires_at", pymongo.ASCENDING)],
                name="expiry",
                expireAfterSeconds=EXPIRED_KEPT_SECONDS,
            ),
        ]
