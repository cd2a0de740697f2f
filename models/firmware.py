"""Firmware images, rollouts (firmware updates) and each targeted device's progress.

The image bytes live in GridFS (bucket `firmware`, see firmware.storage); a
Firmware document holds what is known about them. A rollout is one
FirmwareUpdate plus one FirmwareUpdateTarget per device: a document per device
keeps every progress report a single-document, conditional write (a report that
would move a device backwards matches nothing), which an array inside the
rollout could not do as simply, and lets the dispatcher find due work by index.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Final

import pymongo
from beanie import Document, PydanticObjectId
from pydantic import Field

from models.accounts import utcnow


class Firmware(Document):
    device_type: str
    version: str  # semver, unique per device_type
    size: int
    sha256: str  # hex digest of the image
    # Ed25519 signature over the raw SHA-256 digest (32 bytes), base64.
    signature: str
    # The public key (base64, raw 32 bytes) that verifies `signature`.
    public_key: str
    file_id: PydanticObjectId  # the GridFS file
    filename: str | None = None
    created_by: PydanticObjectId
    created_at: datetime = Field(default_factory=utcnow)
    # Set while deleteFirmware runs: a rollout started meanwhile backs off (firmware.images).
    deleting: bool = False

    class Settings:
        name = "firmwares"
        indexes = [
            pymongo.IndexModel(
                [("device_type", pymongo.ASCENDING), ("version", pymongo.ASCENDING)],
                unique=True,
                name="device_type_version",
            ),
        ]


class UpdateState(StrEnum):
    RUNNING = "RUNNING"  # devices are being dispatched
    PAUSED = "PAUSED"  # the failure threshold was crossed: nothing more is dispatched
    CANCELLED = "CANCELLED"
    SUCCEEDED = "SUCCEEDED"  # every device succeeded
    FAILED = "FAILED"  # every device finished, at least one did not succeed


ACTIVE_UPDATE_STATES: Final = (UpdateState.RUNNING, UpdateState.PAUSED)


class TargetState(StrEnum):
    PENDING = "PENDING"  # not dispatched yet
    DISPATCHED = "DISPATCHED"  # the offer is at the broker; the device has not reported
    DOWNLOADING = "DOWNLOADING"
    VERIFYING = "VERIFYING"
    INSTALLING = "INSTALLING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


# A device's state only moves up this order; the three terminal states share the top.
RANK: Final[dict[TargetState, int]] = {
    TargetState.PENDING: 0,
    TargetState.DISPATCHED: 1,
    TargetState.DOWNLOADING: 2,
    TargetState.VERIFYING: 3,
    TargetState.INSTALLING: 4,
    TargetState.SUCCEEDED: 5,
    TargetState.FAILED: 5,
    TargetState.CANCELLED: 5,
}
TERMINAL: Final = frozenset({TargetState.SUCCEEDED, TargetState.FAILED, TargetState.CANCELLED})
IN_FLIGHT: Final = (
    TargetState.DISPATCHED,
    TargetState.DOWNLOADING,
    TargetState.VERIFYING,
    TargetState.INSTALLING,
)
# What a device may report on devices/{id}/ota/progress.
REPORTED: Final = (
    TargetState.DOWNLOADING,
    TargetState.VERIFYING,
    TargetState.INSTALLING,
    TargetState.SUCCEEDED,
    TargetState.FAILED,
)


class FirmwareUpdate(Document):
    """One rollout of one image to a set of devices, with its pace and abort criteria."""

    firmware_id: PydanticObjectId
    firmware_version: str
    device_type: str
    state: UpdateState = UpdateState.RUNNING
    device_count: int
    devices_per_minute: int
    device_timeout_seconds: int
    # Paused once at least `failure_min_devices` devices finished and more than this
    # share of the finished ones failed.
    max_failure_rate: float
    failure_min_devices: int
    # The dispatcher's rate limit: the next device goes out no earlier than this.
    next_dispatch_at: datetime = Field(default_factory=utcnow)
    # False once no PENDING device is left (states only move forward).
    has_pending: bool = True
    created_by: PydanticObjectId
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    class Settings:
        name = "firmware_updates"
        indexes = [
            pymongo.IndexModel([("state", pymongo.ASCENDING), ("next_dispatch_at", 1)]),
            pymongo.IndexModel([("firmware_id", pymongo.ASCENDING), ("state", 1)]),
        ]


class FirmwareUpdateTarget(Document):
    """One device of one rollout."""

    update_id: PydanticObjectId
    device_id: PydanticObjectId
    owner_id: PydanticObjectId
    firmware_id: PydanticObjectId  # what this device may download while in flight
    version: str  # the firmware version it is offered (set on the device on SUCCEEDED)
    position: int  # dispatch order
    state: TargetState = TargetState.PENDING
    progress: int = 0
    error: str | None = None
    # True while this target owns the device's OTA topic: from creation until it is
    # terminal and its retained offer is cleared. A partial unique index allows one
    # such target per device, so two rollouts never fight over one retained message.
    active: bool = True
    # A retained offer for this target may sit at the broker (cleared when finished).
    offer_retained: bool = False
    dispatched_at: datetime | None = None
    # In flight: FAILED when no report arrives before this (each report moves it on).
    deadline: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow)

    class Settings:
        name = "firmware_update_targets"
        indexes = [
            pymongo.IndexModel(
                [("update_id", pymongo.ASCENDING), ("device_id", pymongo.ASCENDING)], unique=True
            ),
            pymongo.IndexModel(
                [("device_id", pymongo.ASCENDING)],
                unique=True,
                partialFilterExpression={"active": True},
                name="one_active_update_per_device",
            ),
            pymongo.IndexModel([("update_id", 1), ("state", 1), ("position", 1)]),
            pymongo.IndexModel([("state", 1), ("deadline", 1)]),
            pymongo.IndexModel([("device_id", 1), ("firmware_id", 1), ("state", 1)]),
            pymongo.IndexModel([("active", 1), ("state", 1)]),
        ]
