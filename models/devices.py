"""Devices and the hashed secrets that let them in."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import pymongo
from beanie import Document, Indexed, PydanticObjectId
from pydantic import BaseModel, Field

from models.accounts import utcnow
from models.name_search import name_keys
from models.readings import MetricValue


class DeviceStatus(StrEnum):
    NEVER_SEEN = "NEVER_SEEN"
    ONLINE = "ONLINE"
    OFFLINE = "OFFLINE"


class Location(BaseModel):
    """Where a device stands (WGS 84 degrees), e.g. for the dashboards' map widget."""

    latitude: float
    longitude: float


class LatestReading(BaseModel):
    """A copy of the device's newest stored reading (by timestamp)."""

    timestamp: datetime
    values: list[MetricValue]
    anomaly: bool = False


class Device(Document):
    # Who registered it (device quotas count these); access is decided on organization_id.
    owner_id: PydanticObjectId
    # The owning organization (services.access). A device stored before organizations
    # belongs to its owner's personal organization, whose id is the owner's
    # (models.organizations): the start-up migration stores it (services.org_migration).
    organization_id: PydanticObjectId = Field(default_factory=lambda data: data["owner_id"])
    name: str
    type: str
    status: DeviceStatus = DeviceStatus.NEVER_SEEN
    firmware_version: str | None = None
    last_seen: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    # Metric names this device has reported, maintained by the ingest worker.
    metrics: list[str] = Field(default_factory=list)
    mqtt_username: Annotated[str, Indexed(unique=True)]
    # Mosquitto-compatible PBKDF2-SHA512 ("$7$iterations$salt$hash"): never the password.
    mqtt_password_hash: str
    # Bumped by rotation: device tokens carrying an older version are refused.
    credentials_version: int = 1
    # Metadata (docs/devices.md). Devices stored before these existed read as empty; their
    # search keys are filled in once by services.device_search.backfill_search_keys.
    tags: list[str] = Field(default_factory=list)
    # Free JSON, the platform's only (never sent to the device).
    attributes: dict[str, Any] = Field(default_factory=dict)
    location: Location | None = None
    # models.name_search.name_keys(name); kept in step with name by every writer.
    search_keys: list[str] = Field(default_factory=lambda data: name_keys(data.get("name", "")))
    # Days its raw readings (and logs) are kept; None: the platform default
    # (READING_RETENTION_DAYS, which it may only shorten). services/retention.py.
    retention_days: int | None = None
    # Its newest stored reading, kept by the write path (ingest/rollups.py): latestReading
    # answers from here whatever the history's size. Cleared when retention deletes it.
    latest_reading: LatestReading | None = None

    class Settings:
        name = "devices"
        # Every list filters on access.visible_filter, which is organization_id (one id,
        # or $in of the caller's): the indexes lead with it, as they led with owner_id
        # when the owner decided. owner_id keeps one index for the per-user quota count.
        indexes = [
            pymongo.IndexModel(
                [("organization_id", pymongo.ASCENDING), ("_id", pymongo.DESCENDING)]
            ),
            pymongo.IndexModel([("owner_id", pymongo.ASCENDING)]),
            # devices(filter): one per filter, behind the organization filter and before
            # the page order (services.device_search).
            *(
                pymongo.IndexModel(
                    [
                        ("organization_id", pymongo.ASCENDING),
                        (field, pymongo.ASCENDING),
                        ("_id", pymongo.DESCENDING),
                    ]
                )
                for field in ("tags", "status", "type", "search_keys")
            ),
            # The retention pass visits only devices with a retention of their own.
            pymongo.IndexModel(
                [("retention_days", pymongo.ASCENDING), ("_id", pymongo.ASCENDING)],
                name="own_retention",
                partialFilterExpression={"retention_days": {"$gt": 0}},
            ),
        ]
