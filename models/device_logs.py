"""Log lines devices publish on devices/{id}/logs, kept for a retention period."""

from __future__ import annotations

import logging
from datetime import datetime
from enum import StrEnum
from typing import Final

import pymongo
from beanie import Document, PydanticObjectId
from pymongo.errors import OperationFailure

logger = logging.getLogger(__name__)

# The TTL index: MongoDB deletes a line once its timestamp is older than the retention.
RETENTION_INDEX: Final = "retention"
# create_index with another expiry than the existing index's: IndexOptionsConflict (85),
# or IndexKeySpecsConflict (86) from servers that report it so.
_CONFLICTS: Final = frozenset({85, 86})


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


class DeviceLog(Document):
    device_id: PydanticObjectId
    # The device's time when it gave one (contract/devices.md), else the arrival.
    timestamp: datetime
    level: LogLevel
    message: str
    # Which MQTT delivery stored this line: lets a redelivered message be recognised
    # (ingest/store.py).
    source: str | None = None

    class Settings:
        name = "device_logs"
        indexes = [
            # deviceLogs: one device, newest first, from/to on timestamp, ties by _id.
            pymongo.IndexModel(
                [
                    ("device_id", pymongo.ASCENDING),
                    ("timestamp", pymongo.DESCENDING),
                    ("_id", pymongo.DESCENDING),
                ],
                name="device_time",
            ),
        ]


async def apply_retention(days: int) -> None:
    """Keep lines `days` days after their timestamp: create the TTL index, or change its
    expiry when it exists with another (collMod; no index rebuild)."""
    collection = DeviceLog.get_pymongo_collection()
    seconds = days * 86400
    try:
        await collection.create_index(
            [("timestamp", pymongo.ASCENDING)], name=RETENTION_INDEX, expireAfterSeconds=seconds
        )
        return
    except OperationFailure as err:
        if err.code not in _CONFLICTS:
            raise
    try:
        await collection.database.command(
            {
                "collMod": collection.name,
                "index": {"name": RETENTION_INDEX, "expireAfterSeconds": seconds},
            }
        )
    except OperationFailure as err:
        # A server without collMod (the development stand-in): build the index again.
        logger.info("collMod refused (%s): rebuilding the device log TTL index", err)
        await collection.drop_index(RETENTION_INDEX)
        await collection.create_index(
            [("timestamp", pymongo.ASCENDING)], name=RETENTION_INDEX, expireAfterSeconds=seconds
        )
    logger.info("device logs now kept %d days", days)
