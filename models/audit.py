"""The audit log: an append-only record of security-relevant actions.

Nothing updates or deletes an entry but the retention (a TTL index on `timestamp`,
AUDIT_RETENTION_DAYS). `user_ids` lists who may read an entry besides an ADMIN: the
acting user and the user whose account or resource it concerns.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import pymongo
from beanie import Document, PydanticObjectId
from pydantic import Field

from models.accounts import utcnow
from models.retention import set_ttl

# The TTL index: MongoDB deletes an entry once its timestamp is older than the retention.
RETENTION_INDEX: Final = "retention"


class AuditEntry(Document):
    # When it happened (the GraphQL field `at`); named as services.keyset pages by it.
    timestamp: datetime = Field(default_factory=utcnow)
    # e.g. device.create, login.failed (docs/access.md#audit-log).
    action: str
    # Who acted; None when nobody was authenticated (a failed login).
    actor_id: PydanticObjectId | None = None
    # The device, key, user or rollout acted on, as a string id.
    target_id: str | None = None
    # Never a secret: services.audit is given names, counts and ids only.
    details: dict[str, Any] = Field(default_factory=dict)
    # Readers besides an ADMIN: the actor and the owner of the target (services.audit).
    user_ids: list[PydanticObjectId] = Field(default_factory=list)
    # Organizations (issue 16, later): the organization the target belongs to.
    organization_id: PydanticObjectId | None = None

    class Settings:
        name = "audit_log"
        indexes = [
            # auditLog of one user: newest first, keyset on (timestamp, _id). Multikey on
            # user_ids; the sort keys are scalars, so the index still gives the order.
            pymongo.IndexModel(
                [
                    ("user_ids", pymongo.ASCENDING),
                    ("timestamp", pymongo.DESCENDING),
                    ("_id", pymongo.DESCENDING),
                ],
                name="reader_time",
            ),
            # auditLog of an ADMIN: everything, newest first.
            pymongo.IndexModel(
                [("timestamp", pymongo.DESCENDING), ("_id", pymongo.DESCENDING)],
                name="time",
            ),
        ]


async def apply_retention(days: int) -> None:
    """Keep entries `days` days after their timestamp (the TTL index, created or changed)."""
    await set_ttl(AuditEntry.get_pymongo_collection(), "timestamp", name=RETENTION_INDEX, days=days)
