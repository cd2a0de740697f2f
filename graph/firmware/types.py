"""GraphQL types of firmware images and rollouts."""

from __future__ import annotations

from datetime import datetime
from typing import Self

import strawberry
from strawberry.file_uploads import Upload

from core.events import OtaProgressEvent
from firmware.rollouts import UpdateView
from live.sharing import shareable
from models.firmware import Firmware as FirmwareDocument
from models.firmware import FirmwareUpdateTarget, TargetState, UpdateState

strawberry.enum(UpdateState, name="FirmwareUpdateState")
strawberry.enum(
    TargetState,
    name="FirmwareDeviceState",
    description="PENDING (not offered yet), DISPATCHED (offered), then as the device reports.",
)


@strawberry.type
class Firmware:
    id: strawberry.ID
    version: str
    device_type: str
    size: int = strawberry.field(description="Bytes.")
    sha256: str = strawberry.field(description="Hex SHA-256 of the image.")
    signature: str = strawberry.field(
        description="Ed25519 signature of the raw SHA-256 digest, base64; "
        "verify with firmwareSigningKey."
    )
    filename: str | None
    created_at: datetime

    @classmethod
    def from_document(cls, firmware: FirmwareDocument) -> Self:
        return cls(
            id=strawberry.ID(str(firmware.id)),
            version=firmware.version,
            device_type=firmware.device_type,
            size=firmware.size,
            sha256=firmware.sha256,
            signature=firmware.signature,
            filename=firmware.filename,
            created_at=firmware.created_at,
        )


@shareable
@strawberry.type
class FirmwareUpdateDevice:
    """One device of a rollout: its state, progress (0-100) and the device's error."""

    device_id: strawberry.ID
    state: TargetState
    progress: int
    error: str | None
    updated_at: datetime

    @classmethod
    def from_target(cls, target: FirmwareUpdateTarget) -> Self:
        return cls(
            device_id=strawberry.ID(str(target.device_id)),
            state=target.state,
            progress=target.progress,
            error=target.error,
            updated_at=target.updated_at,
        )

    @classmethod
    def from_event(cls, event: OtaProgressEvent) -> Self:
        return cls(
            device_id=strawberry.ID(event.device_id),
            state=TargetState(event.state),
            progress=event.progress,
            error=event.error,
            updated_at=event.at,
        )


@strawberry.type
class FirmwareUpdate:
    id: strawberry.ID
    state: UpdateState
    firmware: Firmware | None = strawberry.field(description="None once the image is deleted.")
    firmware_version: str
    devices: list[FirmwareUpdateDevice] = strawberry.field(description="In dispatch order.")
    device_count: int
    devices_per_minute: int
    device_timeout_seconds: int
    max_failure_rate: float
    failure_min_devices: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_view(cls, view: UpdateView) -> Self:
        update = view.update
        return cls(
            id=strawberry.ID(str(update.id)),
            state=update.state,
            firmware=Firmware.from_document(view.firmware) if view.firmware else None,
            firmware_version=update.firmware_version,
            devices=[FirmwareUpdateDevice.from_target(t) for t in view.targets],
            device_count=update.device_count,
            devices_per_minute=update.devices_per_minute,
            device_timeout_seconds=update.device_timeout_seconds,
            max_failure_rate=update.max_failure_rate,
            failure_min_devices=update.failure_min_devices,
            created_at=update.created_at,
            updated_at=update.updated_at,
        )


@strawberry.input
class UploadFirmwareInput:
    file: Upload = strawberry.field(
        description="The image, as a GraphQL multipart request file "
        "(send a GraphQL-Require-Preflight header)."
    )
    version: str = strawberry.field(description="Semantic version, unique per deviceType.")
    device_type: str


@strawberry.input
class StartFirmwareUpdateInput:
    firmware_id: strawberry.ID
    device_ids: list[strawberry.ID] = strawberry.field(
        description="Devices of the firmware's type, each in no other unfinished rollout."
    )
    devices_per_minute: int | None = strawberry.field(
        default=None, description="Dispatch rate (default: FIRMWARE_DEVICES_PER_MINUTE)."
    )
    device_timeout_seconds: int | None = strawberry.field(
        default=None,
        description="A device silent this long after its offer or last report fails.",
    )
    max_failure_rate: float | None = strawberry.field(
        default=None,
        description="Pause once more than this share of the finished devices failed (0-1).",
    )
    failure_min_devices: int | None = strawberry.field(
        default=None, description="...counted once at least this many devices finished."
    )
