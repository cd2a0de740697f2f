"""GraphQL types of devices and their credentials."""

from __future__ import annotations

from datetime import datetime
from typing import Self

import strawberry
from beanie import PydanticObjectId
from strawberry.scalars import JSON

from graph.accounts.types import User
from graph.context import Info
from graph.devices.metadata import ATTRIBUTES_DESCRIPTION, Location, LocationInput
from graph.organizations.types import Organization
from graph.readings.types import Reading
from graph.twins.types import DeviceTwin
from models.devices import Device as DeviceDocument
from models.devices import DeviceStatus, LatestReading
from services.devices import DeviceCredentials as Credentials
from services.devices import TokenCheck

strawberry.enum(DeviceStatus)


@strawberry.type
class Device:
    id: strawberry.ID
    name: str
    type: str
    status: DeviceStatus
    firmware_version: str | None
    last_seen: datetime | None
    created_at: datetime
    metrics: list[str] = strawberry.field(description="Metric names this device has reported.")
    tags: list[str] = strawberry.field(description="Labels for grouping and filtering.")
    attributes: JSON = strawberry.field(description=ATTRIBUTES_DESCRIPTION)
    location: Location | None = strawberry.field(description="Where it stands, if known.")
    retention_days: int | None = strawberry.field(
        description="Days its raw readings (and logs) are kept; null: the platform default."
    )
    owner_id: strawberry.Private[PydanticObjectId]
    organization_id: strawberry.Private[PydanticObjectId]
    latest: strawberry.Private[LatestReading | None]

    @strawberry.field(description="The organization the device belongs to.")
    async def organization(self, info: Info) -> Organization:
        # The device itself was resolved with the viewer's access checked.
        found = await info.context.loaders.organizations.load(self.organization_id)
        if found is None:  # the organization was removed under us
            raise LookupError(f"organization of device {self.id} is missing")
        return Organization.from_document(found)

    @strawberry.field
    async def owner(self, info: Info) -> User:
        user = await info.context.loaders.users.load(self.owner_id)
        if user is None:  # the owner was removed under us
            raise LookupError(f"owner {self.owner_id} of device {self.id} is missing")
        return User.from_document(user)

    @strawberry.field(description="The newest reading, if any.")
    def latest_reading(self) -> Reading | None:
        # A copy on the device document, kept by the write path: no readings query.
        return Reading.from_latest(self.id, self.latest) if self.latest else None

    @strawberry.field(description="Desired and reported state, their delta and version.")
    async def twin(self, info: Info) -> DeviceTwin:
        # The device itself was resolved with the viewer's access checked.
        twin = await info.context.loaders.twins.load(PydanticObjectId(self.id))
        return DeviceTwin.from_twin(twin)

    @classmethod
    def from_document(cls, device: DeviceDocument) -> Self:
        return cls(
            id=strawberry.ID(str(device.id)),
            name=device.name,
            type=device.type,
            status=device.status,
            firmware_version=device.firmware_version,
            last_seen=device.last_seen,
            created_at=device.created_at,
            metrics=sorted(device.metrics),
            tags=list(device.tags),
            attributes=JSON(device.attributes),
            location=Location.from_document(device.location) if device.location else None,
            retention_days=device.retention_days,
            owner_id=device.owner_id,
            organization_id=device.organization_id,
            latest=device.latest_reading,
        )


@strawberry.type
class DeviceCredentials:
    mqtt_username: str
    mqtt_password: str
    token: str = strawberry.field(
        description="Device token (JWT) for HTTP, e.g. firmware download."
    )

    @classmethod
    def from_credentials(cls, credentials: Credentials) -> Self:
        return cls(
            mqtt_username=credentials.mqtt_username,
            mqtt_password=credentials.mqtt_password,
            token=credentials.token,
        )


@strawberry.type
class CreateDevicePayload:
    device: Device
    credentials: DeviceCredentials


@strawberry.type
class DeviceTokenVerification:
    valid: bool
    device_id: strawberry.ID | None
    expires_at: datetime | None

    @classmethod
    def from_check(cls, check: TokenCheck) -> Self:
        return cls(
            valid=check.valid,
            device_id=strawberry.ID(check.device_id) if check.device_id else None,
            expires_at=check.expires_at,
        )


@strawberry.input
class CreateDeviceInput:
    name: str
    type: str
    organization_id: strawberry.ID | None = strawberry.field(
        default=None, description="Omitted: the caller's personal organization."
    )


@strawberry.input
class UpdateDeviceInput:
    name: str | None = None
    type: str | None = None
    # Metadata: left out, unchanged; null, cleared (docs/devices.md).
    tags: list[str] | None = strawberry.field(
        default=strawberry.UNSET, description="Replaces the tags; null or [] clears them."
    )
    attributes: JSON | None = strawberry.field(
        default=strawberry.UNSET, description="Replaces the attributes; null clears them."
    )
    location: LocationInput | None = strawberry.field(
        default=strawberry.UNSET, description="null clears it."
    )
    retention_days: int | None = strawberry.field(
        default=strawberry.UNSET,
        description="1..the platform's retention (README); null: the platform default; "
        "omitted: unchanged.",
    )
