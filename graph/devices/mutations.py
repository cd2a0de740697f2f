"""Mutations of the devices domain."""

from __future__ import annotations

import strawberry

from graph.context import Info
from graph.devices.metadata import kept, location_change
from graph.devices.types import (
    CreateDeviceInput,
    CreateDevicePayload,
    Device,
    DeviceCredentials,
    DeviceTokenVerification,
    UpdateDeviceInput,
)
from services import devices
from services.device_metadata import MetadataChange
from services.retention import RetentionChange


@strawberry.type
class DeviceMutation:
    @strawberry.mutation(description="Register a device; its credentials are shown this once.")
    async def create_device(self, info: Info, input: CreateDeviceInput) -> CreateDevicePayload:
        owner = await info.context.require_user()
        device, credentials = await devices.create_device(
            owner,
            name=input.name,
            type=input.type,
            settings=info.context.settings,
            broker=info.context.broker,
            organization_id=input.organization_id,
        )
        return CreateDevicePayload(
            device=Device.from_document(device),
            credentials=DeviceCredentials.from_credentials(credentials),
        )

    @strawberry.mutation
    async def update_device(
        self, info: Info, id: strawberry.ID, input: UpdateDeviceInput
    ) -> Device:
        viewer = await info.context.require_user()
        retention = (
            None
            if input.retention_days is strawberry.UNSET
            else RetentionChange.checked(input.retention_days, info.context.settings)
        )
        metadata = MetadataChange(
            tags=kept(input.tags),
            attributes=kept(input.attributes),
            location=location_change(input.location),
        )
        device = await devices.update_device(
            viewer,
            id,
            name=input.name,
            type=input.type,
            metadata=metadata,
            settings=info.context.settings,
            retention=retention,
        )
        return Device.from_document(device)

    @strawberry.mutation(description="Delete a device, its broker credentials and its readings.")
    async def delete_device(self, info: Info, id: strawberry.ID) -> bool:
        viewer = await info.context.require_user()
        await devices.delete_device(
            viewer,
            id,
            broker=info.context.broker,
            redis=info.context.redis,
            settings=info.context.settings,
        )
        return True

    @strawberry.mutation(description="New MQTT password and token; the old ones stop at once.")
    async def rotate_device_credentials(self, info: Info, id: strawberry.ID) -> DeviceCredentials:
        viewer = await info.context.require_user()
        credentials = await devices.rotate_credentials(
            viewer,
            id,
            settings=info.context.settings,
            broker=info.context.broker,
            redis=info.context.redis,
        )
        return DeviceCredentials.from_credentials(credentials)

    @strawberry.mutation(description="Check a device token presented by anyone (e.g. a gateway).")
    async def verify_device_token(self, info: Info, token: str) -> DeviceTokenVerification:
        # No user token (the contract): a gateway holds only the device's token, and
        # the answer reveals nothing the token's holder does not already know.
        check = await devices.verify_device_token(token, settings=info.context.settings)
        return DeviceTokenVerification.from_check(check)
