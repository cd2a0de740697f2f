"""devices(filter): the viewer's devices narrowed by tag, type, status and name search.

Every filter is optional and they combine with AND, behind access.visible_filter, so no
filter reaches another tenant's devices; an organizationId the caller is no member of
is NOT_FOUND (an ADMIN's: any that exists). Each filter has an index that leads with the
organization and ends with the page order (models.devices): (organization_id, tags |
status | type | search_keys, _id). The search is an anchored prefix match on the stored search keys
(models.name_search), which MongoDB answers as one key range of that index.
"""

from __future__ import annotations

import contextlib
import logging
import unicodedata
from dataclasses import dataclass
from typing import Final

from beanie import PydanticObjectId
from pymongo import UpdateOne
from pymongo.errors import DuplicateKeyError

from models.accounts import User
from models.devices import Device, DeviceStatus
from models.name_search import name_keys, normalise, prefix_pattern
from models.platform import Marker
from services import access
from services.device_metadata import normalise_tag
from services.devices import MAX_NAME_LENGTH, MAX_TYPE_LENGTH
from services.errors import BadInput, NotFound
from services.memberships import ensure_organization_exists
from services.pagination import Page, paginate
from services.validation import clean_text, parse_id

logger = logging.getLogger(__name__)

# Claimed once the devices stored before search existed all have their keys.
SEARCH_KEYS_MARKER: Final = "device-search-keys-v1"
_BACKFILL_BATCH: Final = 500


@dataclass(frozen=True, slots=True)
class DeviceFilter:
    """The `devices(filter: ...)` argument; None: that filter is not applied."""

    tag: str | None = None
    type: str | None = None
    status: DeviceStatus | None = None
    search: str | None = None
    organization_id: str | None = None


def search_text(search: str) -> str:
    """The search as it is matched (models.name_search.normalise); "" matches all."""
    # Cs: a lone surrogate, which no stored name holds and BSON cannot carry.
    if any(unicodedata.category(ch) in {"Cc", "Cf", "Cs"} and not ch.isspace() for ch in search):
        raise BadInput("filter.search", "must not contain control characters")
    text = normalise(search)
    if len(text) > MAX_NAME_LENGTH:
        raise BadInput("filter.search", f"must be at most {MAX_NAME_LENGTH} characters")
    return text


def filter_query(device_filter: DeviceFilter) -> dict[str, object]:
    """The MongoDB conditions of `device_filter` (without the access filter)."""
    query: dict[str, object] = {}
    if device_filter.organization_id is not None:
        query["organization_id"] = parse_id(
            device_filter.organization_id, kind="organization", field="filter.organizationId"
        )
    if device_filter.tag is not None:
        query["tags"] = normalise_tag(device_filter.tag, field="filter.tag")
    if device_filter.type is not None:
        query["type"] = clean_text(
            device_filter.type, field="filter.type", max_length=MAX_TYPE_LENGTH
        )
    if device_filter.status is not None:
        query["status"] = device_filter.status.value
    if device_filter.search is not None and (text := search_text(device_filter.search)):
        query["search_keys"] = {"$regex": prefix_pattern(text)}
    return query


async def find_devices(
    viewer: User, device_filter: DeviceFilter, *, first: int, after: str | None
) -> Page[Device]:
    """The viewer's devices (an ADMIN's: all) matching every filter given, newest first."""
    conditions = filter_query(device_filter)
    organization = conditions.get("organization_id")
    if organization is not None:
        # One organization: NotFound unless the caller may see its devices.
        if not access.may(viewer, "read", "device", organization):
            raise NotFound("Organization")
        if access.member_role(viewer, organization) is None:  # an ADMIN's any id
            await ensure_organization_exists(PydanticObjectId(str(organization)))
        # Its own filter is the access filter's narrowing: one index range.
        return await paginate(Device, conditions, first=first, after=after, newest_first=True)
    query = {**conditions, **access.visible_filter(viewer, "device")}
    return await paginate(Device, query, first=first, after=after, newest_first=True)


async def backfill_search_keys() -> int:
    """Give every device stored before search existed its search keys; the number given.

    Runs at API start; after one complete pass a marker makes it a single read. A
    device renamed meanwhile already has its keys, and the `$exists` condition leaves
    them alone.
    """
    if await Marker.get(SEARCH_KEYS_MARKER) is not None:
        return 0
    collection = Device.get_pymongo_collection()
    missing = {"search_keys": {"$exists": False}}
    updated = 0
    batch: list[UpdateOne] = []
    async for raw in collection.find(missing, {"name": 1}):
        keys = name_keys(str(raw.get("name", "")))
        batch.append(UpdateOne({"_id": raw["_id"], **missing}, {"$set": {"search_keys": keys}}))
        if len(batch) >= _BACKFILL_BATCH:
            updated += (await collection.bulk_write(batch, ordered=False)).modified_count
            batch = []
    if batch:
        updated += (await collection.bulk_write(batch, ordered=False)).modified_count
    with contextlib.suppress(DuplicateKeyError):  # another API process finished first
        await Marker(id=SEARCH_KEYS_MARKER, claimed_by="backfill_search_keys").insert()
    if updated:
        logger.info("search keys given to %d devices stored before search existed", updated)
    return updated
