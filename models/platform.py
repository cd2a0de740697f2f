"""Platform-wide markers claimed exactly once (e.g. the first ADMIN)."""

from __future__ import annotations

from datetime import datetime

from beanie import Document
from pydantic import Field

from models.accounts import utcnow


class Marker(Document):
    """A named one-time event; its unique _id makes the claim atomic."""

    id: str  # type: ignore[assignment]
    claimed_by: str
    claimed_at: datetime = Field(default_factory=utcnow)

    class Settings:
        name = "platform_markers"
