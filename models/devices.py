"""Devices and the hashed secrets that let them in."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

import pymongo
from beanie import Document, Indexed, PydanticObjectId
from pydantic import Field

from models.accounts import utcnow


class DeviceStatus(StrEnum):
    NEVER_SEEN = "NEVER_SEEN"
    ONLINE = "ONLINE"
    OFFLINE = "OFFLINE"


class Device(Document):
    owner_id: PydanticObjectId
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
    # Days its raw readings (and logs) are kept; None: the platform default
    # (READING_RETENTION_DAYS, which it may only shorten). services/retention.py.
    retention_days: int | None = None

    class Settings:
        name = "devices"
        indexes = [
            pymongo.IndexModel([("owner_id", pymongo.ASCENDING), ("_id", pymongo.DESCENDING)]),
            # The retention pass visits only devices with a retention of their own.
            pymongo.IndexModel(
                [("retention_days", pymongo.ASCENDING), ("_id", pymongo.ASCENDING)],
                name="own_retention",
                partialFilterExpression={"retention_days": {"$gt": 0}},
            ),
        ]
