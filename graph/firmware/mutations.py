"""Mutations of the firmware domain (ADMIN only)."""

from __future__ import annotations

import strawberry
from starlette.datastructures import UploadFile

from firmware import images, rollouts
from firmware.rollouts import RolloutOptions
from firmware.signing import signer_for
from graph.context import Info
from graph.firmware.types import (
    Firmware,
    FirmwareUpdate,
    StartFirmwareUpdateInput,
    UploadFirmwareInput,
)


@strawberry.type
class FirmwareMutation:
    @strawberry.mutation(
        description="Store an image (GraphQL multipart request), hashed and signed."
    )
    async def upload_firmware(self, info: Info, input: UploadFirmwareInput) -> Firmware:
        uploader = await info.context.require_user()
        upload = input.file if isinstance(input.file, UploadFile) else None
        firmware = await images.upload_firmware(
            uploader,
            file=upload,
            filename=upload.filename if upload is not None else None,
            version=input.version,
            device_type=input.device_type,
            settings=info.context.settings,
            signer=signer_for(info.context.settings),
        )
        return Firmware.from_document(firmware)

    @strawberry.mutation(description="Delete an image no running or paused rollout uses.")
    async def delete_firmware(self, info: Info, id: strawberry.ID) -> bool:
        viewer = await info.context.require_user()
        await images.delete_firmware(viewer, id)
        return True

    @strawberry.mutation(description="Roll an image out to devices, at a limited pace.")
    async def start_firmware_update(
        self, info: Info, input: StartFirmwareUpdateInput
    ) -> FirmwareUpdate:
        viewer = await info.context.require_user()
        view = await rollouts.start_update(
            viewer,
            firmware_id=input.firmware_id,
            device_ids=list(input.device_ids),
            settings=info.context.settings,
            options=RolloutOptions(
                devices_per_minute=input.devices_per_minute,
                device_timeout_seconds=input.device_timeout_seconds,
                max_failure_rate=input.max_failure_rate,
                failure_min_devices=input.failure_min_devices,
            ),
        )
        return FirmwareUpdate.from_view(view)

    @strawberry.mutation(
        description="Cancel a rollout: devices not started yet are CANCELLED; "
        "devices already installing finish."
    )
    async def cancel_firmware_update(self, info: Info, id: strawberry.ID) -> FirmwareUpdate:
        viewer = await info.context.require_user()
        view = await rollouts.cancel_update(viewer, id, events=info.context.bus)
        return FirmwareUpdate.from_view(view)
