"""Queries of the firmware domain."""

from __future__ import annotations

import strawberry

from firmware import images, rollouts
from firmware.signing import signer_for
from graph.context import Info
from graph.firmware.types import Firmware, FirmwareUpdate


@strawberry.type
class FirmwareQuery:
    @strawberry.field(description="Firmware images, newest first (at most 500). ADMIN only.")
    async def firmwares(self, info: Info, device_type: str | None = None) -> list[Firmware]:
        viewer = await info.context.require_user()
        found = await images.list_firmwares(viewer, device_type=device_type)
        return [Firmware.from_document(firmware) for firmware in found]

    @strawberry.field(
        description="The Ed25519 public key (base64, raw 32 bytes) that verifies "
        "firmware signatures."
    )
    async def firmware_signing_key(self, info: Info) -> str:
        await info.context.require_user()
        return signer_for(info.context.settings).public_key

    @strawberry.field(description="One rollout and its devices. ADMIN only.")
    async def firmware_update(self, info: Info, id: strawberry.ID) -> FirmwareUpdate:
        viewer = await info.context.require_user()
        return FirmwareUpdate.from_view(await rollouts.get_update(viewer, id))
