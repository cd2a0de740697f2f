"""DataLoaders: one database round trip per batch of keys, whatever the list size."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from beanie import PydanticObjectId
from strawberry.dataloader import DataLoader

from models.accounts import User
from models.organizations import Organization
from models.readings import Reading
from services.twins import Twin, read_twins


async def load_users(ids: Sequence[PydanticObjectId]) -> list[User | None]:
    found = {user.id: user for user in await User.find({"_id": {"$in": list(ids)}}).to_list()}
    return [found.get(user_id) for user_id in ids]


async def load_organizations(ids: Sequence[PydanticObjectId]) -> list[Organization | None]:
    found = {o.id: o for o in await Organization.find({"_id": {"$in": list(ids)}}).to_list()}
    return [found.get(organization_id) for organization_id in ids]


async def load_latest_readings(device_ids: Sequence[PydanticObjectId]) -> list[Reading | None]:
    pipeline: list[dict[str, Any]] = [
        {"$match": {"device_id": {"$in": list(device_ids)}}},
        {"$sort": {"device_id": 1, "timestamp": -1}},
        {"$group": {"_id": "$device_id", "latest": {"$first": "$$ROOT"}}},
    ]
    cursor = await Reading.get_pymongo_collection().aggregate(pipeline)
    latest = {row["_id"]: Reading.model_validate(row["latest"]) async for row in cursor}
    return [latest.get(device_id) for device_id in device_ids]


class Loaders:
    """The loaders of one request: each batches the keys of one event-loop turn and
    caches what it loaded for the rest of the request."""

    def __init__(self) -> None:
        self.users: DataLoader[PydanticObjectId, User | None] = DataLoader(load_fn=load_users)
        self.latest_readings: DataLoader[PydanticObjectId, Reading | None] = DataLoader(
            load_fn=load_latest_readings
        )
        self.twins: DataLoader[PydanticObjectId, Twin] = DataLoader(load_fn=read_twins)
        self.organizations: DataLoader[PydanticObjectId, Organization | None] = DataLoader(
            load_fn=load_organizations
        )
