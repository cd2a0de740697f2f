"""Device registration, ownership and credentials."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from beanie import PydanticObjectId

from core.settings import Settings
from models.accounts import Role, User
from models.devices import Device
from models.readings import Reading
from services.credentials import hash_mqtt_password
from services.errors import Unauthenticated
from services.pagination import Page, paginate
from services.tokens import (
    DeviceClaims,
    decode_device_token,
    issue_device_token,
    new_opaque_token,
)
from services.validation import clean_text, ensure_found, parse_id

logger = logging.getLogger(__name__)

MAX_NAME_LENGTH = 100
MAX_TYPE_LENGTH = 64


@dataclass(frozen=True, slots=True)
class DeviceCredentials:
    """Shown once, at creation and rotation; only hashes are kept."""

    mqtt_username: str
    mqtt_password: str
    token: str


@dataclass(frozen=True, slots=True)
class TokenCheck:
    valid: bool
    device_id: str | None = None
    expires_at: datetime | None = None


def _visible_to(viewer: User) -> dict[str, object]:
    return {} if viewer.role == Role.ADMIN else {"owner_id": viewer.id}


def _new_credentials(device: Device, settings: Settings) -> DeviceCredentials:
    password = new_opaque_token()
    device.mqtt_password_hash = hash_mqtt_password(password)
    token = issue_device_token(str(device.id), device.credentials_version, settings)
    return DeviceCredentials(
        mqtt_username=device.mqtt_username, mqtt_password=password, token=token.token
    )


async def create_device(
    owner: User, *, name: str, type: str, settings: Settings
) -> tuple[Device, DeviceCredentials]:
    """Register a device for `owner`; its credentials are returned this once."""
    device_id = PydanticObjectId()
    device = Device(
        id=device_id,
        owner_id=owner.id,
        name=clean_text(name, field="name", max_length=MAX_NAME_LENGTH),
        type=clean_text(type, field="type", max_length=MAX_TYPE_LENGTH),
        mqtt_username=str(device_id),
        mqtt_password_hash="",
    )
    credentials = _new_credentials(device, settings)
    await device.insert()
    logger.info("device %s created for user %s", device.id, owner.id)
    return device, credentials


async def list_devices(viewer: User, *, first: int, after: str | None) -> Page[Device]:
    """The viewer's devices (an ADMIN's: all), newest first."""
    return await paginate(Device, _visible_to(viewer), first=first, after=after, newest_first=True)


async def get_device(viewer: User, device_id: str) -> Device:
    """One device the viewer may see; NotFound for a missing or foreign one alike."""
    object_id = parse_id(device_id, kind="device")
    return ensure_found(await Device.find_one({"_id": object_id, **_visible_to(viewer)}), "Device")


async def update_device(
    viewer: User, device_id: str, *, name: str | None, type: str | None
) -> Device:
    """Rename or retype a device."""
    device = await get_device(viewer, device_id)
    changes: dict[str, object] = {}
    if name is not None:
        changes["name"] = clean_text(name, field="name", max_length=MAX_NAME_LENGTH)
    if type is not None:
        changes["type"] = clean_text(type, field="type", max_length=MAX_TYPE_LENGTH)
    if changes:
        await device.set(changes)
    return device


async def delete_device(viewer: User, device_id: str) -> None:
    """Remove a device and everything that belongs to it."""
    device = await get_device(viewer, device_id)
    await device.delete()
    # Readings go after the device, so no reading outlives a device that is gone.
    await Reading.find(Reading.device_id == device.id).delete()
    logger.info("device %s deleted by user %s", device.id, viewer.id)


async def rotate_credentials(
    viewer: User, device_id: str, *, settings: Settings
) -> DeviceCredentials:
    """New MQTT password and token; the old ones stop working at once."""
    device = await get_device(viewer, device_id)
    device.credentials_version += 1
    credentials = _new_credentials(device, settings)
    await device.set(
        {
            "mqtt_password_hash": device.mqtt_password_hash,
            "credentials_version": device.credentials_version,
        }
    )
    logger.info("credentials of device %s rotated", device.id)
    return credentials


async def authenticate_device_token(
    token: str, *, settings: Settings
) -> tuple[Device, DeviceClaims]:
    """The device a token belongs to, if the token is valid now and not revoked."""
    claims = decode_device_token(token, settings)
    if not PydanticObjectId.is_valid(claims.device_id):
        raise Unauthenticated("Invalid device token.")
    device = await Device.get(PydanticObjectId(claims.device_id))
    if device is None or device.credentials_version != claims.version:
        raise Unauthenticated("Device token revoked.")
    return device, claims


async def verify_device_token(token: str, *, settings: Settings) -> TokenCheck:
    """Whether a device token is valid now; never raises for a bad token."""
    try:
        device, claims = await authenticate_device_token(token, settings=settings)
    except Unauthenticated:
        return TokenCheck(valid=False)
    return TokenCheck(valid=True, device_id=str(device.id), expires_at=claims.expires_at)
