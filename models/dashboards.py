"""Dashboards: a user's named widget layouts (config schema: docs/dashboards.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pymongo
from beanie import Document, PydanticObjectId
from pydantic import Field

from models.accounts import utcnow


class Dashboard(Document):
    # Who made it (dashboard quotas count these); access is decided on organization_id.
    owner_id: PydanticObjectId
    # The owning organization; before organizations, the owner's personal one (its id).
    organization_id: PydanticObjectId = Field(default_factory=lambda data: data["owner_id"])
    name: str
    # The config as the client sent it, once validated by services.dashboard_config.
    config: dict[str, Any]
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    class Settings:
        name = "dashboards"
        indexes = [
            pymongo.IndexModel(
                [("organization_id", pymongo.ASCENDING), ("_id", pymongo.DESCENDING)]
            ),
            pymongo.IndexModel([("owner_id", pymongo.ASCENDING)]),
        ]
