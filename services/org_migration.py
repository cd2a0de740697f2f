"""The start-up migration to organizations: every user stored before organizations gets
its personal organization, and its devices, dashboards, alert rules, alerts and
webhooks are stored as that organization's.

A personal organization's id is its user's (models.organizations), so the migration
needs no mapping: a document's organization_id is its owner_id (a webhook's user_id).
Every step is idempotent (a personal organization is a duplicate _id the second time; a
document is updated only while it has no organization_id), so API processes starting at
once may all run it; after one complete pass a marker in platform_markers makes it a
single read, as services.device_search.backfill_search_keys does.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Final

from beanie import Document
from pymongo import InsertOne, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from models.accounts import User
from models.alerts import Alert, AlertRule, NotificationWebhook
from models.dashboards import Dashboard
from models.devices import Device
from models.organizations import Organization
from models.platform import Marker
from services.memberships import personal_organization

logger = logging.getLogger(__name__)

ORGANIZATIONS_MARKER: Final = "organizations-v1"
_BATCH: Final = 500
_DUPLICATE_KEY: Final = 11000
# The collections whose documents gain organization_id, and the field it is copied from.
OWNED: Final[tuple[tuple[type[Document], str], ...]] = (
    (Device, "owner_id"),
    (Dashboard, "owner_id"),
    (AlertRule, "owner_id"),
    (Alert, "owner_id"),
    (NotificationWebhook, "user_id"),
)


async def migrate_to_organizations() -> dict[str, int]:
    """Run the migration unless it has completed; the number of documents changed per
    collection ({} when the marker says it is done)."""
    if await Marker.get(ORGANIZATIONS_MARKER) is not None:
        return {}
    changed = {"organizations": await _personal_organizations()}
    for model, source in OWNED:
        changed[model.get_collection_name()] = await _organization_ids(model, source)
    with contextlib.suppress(DuplicateKeyError):  # another API process finished first
        await Marker(id=ORGANIZATIONS_MARKER, claimed_by="migrate_to_organizations").insert()
    if any(changed.values()):
        logger.info("migrated to organizations: %s", changed)
    return changed


async def _personal_organizations() -> int:
    """A personal organization for every user without one."""
    made = 0
    users = User.get_pymongo_collection()
    organizations = Organization.get_pymongo_collection()
    batch: list[Any] = []

    async def flush() -> int:
        ids = [raw["_id"] for raw in batch]
        existing = {
            raw["_id"] async for raw in organizations.find({"_id": {"$in": ids}}, {"_id": 1})
        }
        inserts = [
            InsertOne(personal_organization(user_id).model_dump(by_alias=True))
            for user_id in ids
            if user_id not in existing
        ]
        if not inserts:
            return 0
        try:
            return (await organizations.bulk_write(inserts, ordered=False)).inserted_count
        except BulkWriteError as err:
            # Made meanwhile (a registration, another API process): already there.
            if any(e.get("code") != _DUPLICATE_KEY for e in err.details["writeErrors"]):
                raise
            return int(err.details.get("nInserted", 0))

    async for raw in users.find({}, {"_id": 1}):
        batch.append(raw)
        if len(batch) >= _BATCH:
            made += await flush()
            batch = []
    if batch:
        made += await flush()
    return made


async def _organization_ids(model: type[Document], source: str) -> int:
    """organization_id = `source` on every document of `model` without one."""
    collection = model.get_pymongo_collection()
    missing = {"organization_id": {"$exists": False}}
    updated = 0
    batch: list[UpdateOne] = []
    async for raw in collection.find({**missing, source: {"$exists": True}}, {source: 1}):
        batch.append(
            UpdateOne({"_id": raw["_id"], **missing}, {"$set": {"organization_id": raw[source]}})
        )
        if len(batch) >= _BATCH:
            updated += (await collection.bulk_write(batch, ordered=False)).modified_count
            batch = []
    if batch:
        updated += (await collection.bulk_write(batch, ordered=False)).modified_count
    return updated
