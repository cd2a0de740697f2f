"""Device registration, ownership and credentials."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime

from beanie import PydanticObjectId
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.dynsec import BrokerUnavailable, DynsecError
from core.events import DEVICE_CHANGES_CHANNEL
from core.settings import ApiSettings
from models.accounts import User
from models.devices import Device
from models.name_search import name_keys
from services import access, audit, broker_auth, broker_identities, ratelimit
from services.alert_cleanup import delete_device_alerts
from services.broker_identities import DynsecCommands, broker_errors
from services.broker_sessions import close_device_connections
from services.credentials import hash_mqtt_password
from services.device_metadata import MetadataChange, metadata_updates
from services.errors import Conflict, Forbidden, NotFound, QuotaExceeded, Unauthenticated
from services.memberships import ensure_organization_exists, ensure_personal_membership
from services.retention import RetentionChange, delete_device_data
from services.tokens import (
    DeviceClaims,
    decode_device_token,
    issue_device_token,
)
from services.twin_cleanup import forget_twin
from services.validation import clean_text, ensure_found, parse_id

logger = logging.getLogger(__name__)

MAX_NAME_LENGTH = 100
MAX_TYPE_LENGTH = 64
NO_METADATA_CHANGE = MetadataChange()


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


async def _undo_on_broker(step: Awaitable[None]) -> None:
    """Best-effort compensation after MongoDB failed; reconcile repairs what it cannot."""
    try:
        await step
    except (BrokerUnavailable, DynsecError) as err:
        logger.warning("broker: undo failed (%s); the next reconcile repairs it", err)


async def _tell_broker_auth(step: Awaitable[None], device_id: object) -> None:
    """Brokers asking over HTTP (services.broker_auth) follow at once; without Redis,
    within broker_auth.CACHE_SECONDS."""
    try:
        await step
    except RedisError as err:
        logger.warning("device %s: broker auth cache not updated (%s)", device_id, err)


def _new_credentials(device: Device, settings: ApiSettings) -> DeviceCredentials:
    password = broker_identities.device_password(
        settings, str(device.id), device.credentials_version
    )
    device.mqtt_password_hash = hash_mqtt_password(password)
    token = issue_device_token(str(device.id), device.credentials_version, settings)
    return DeviceCredentials(
        mqtt_username=device.mqtt_username, mqtt_password=password, token=token.token
    )


def organization_of_new(
    viewer: User, organization_id: str | None, *, kind: access.Kind
) -> PydanticObjectId:
    """The organization a new `kind` goes to: `organization_id`, or the caller's personal
    one (its id is the caller's) when omitted; NotFound for one it may not see,
    Forbidden for one where its role may not write (a VIEWER)."""
    if organization_id is None:
        if viewer.id is None:
            raise ValueError("the viewer must be stored")
        chosen = viewer.id
    else:
        chosen = PydanticObjectId(
            parse_id(organization_id, kind="organization", field="organizationId")
        )
    if not access.may(viewer, "write", kind, chosen):
        if not access.may(viewer, "read", kind, chosen) and not access.may(
            viewer, "read", "organization", chosen
        ):
            raise NotFound("Organization")
        raise Forbidden("Your role in this organization may not create this.")
    return chosen


async def create_device(
    owner: User,
    *,
    name: str,
    type: str,
    settings: ApiSettings,
    broker: DynsecCommands,
    organization_id: str | None = None,
) -> tuple[Device, DeviceCredentials]:
    """Register a device for `owner` in `organization_id` (omitted: its personal
    organization; its role there must allow writing devices); its credentials are
    returned this once.

    The broker client comes first: a Device exists only with its client. A client
    left without a Device (the insert failed, or the process died) is removed here
    or by the next reconcile.
    """
    if organization_id is None:
        await ensure_personal_membership(owner)
    organization = organization_of_new(owner, organization_id, kind="device")
    if organization_id is not None:
        await ensure_organization_exists(organization)
    # Counted, not reserved: parallel creations may pass it by a few, never by many.
    if await Device.find({"owner_id": owner.id}).count() >= settings.devices_per_user_max:
        raise QuotaExceeded(
            f"Device quota reached: at most {settings.devices_per_user_max} devices per user."
        )
    device_id = PydanticObjectId()
    device = Device(
        id=device_id,
        owner_id=owner.id,
        organization_id=organization,
        name=clean_text(name, field="name", max_length=MAX_NAME_LENGTH),
        type=clean_text(type, field="type", max_length=MAX_TYPE_LENGTH),
        mqtt_username=str(device_id),
        mqtt_password_hash="",
    )
    credentials = _new_credentials(device, settings)
    with broker_errors("the device was not created"):
        await broker_identities.provision_device(
            broker, settings, str(device_id), credentials.mqtt_password
        )
    try:
        await device.insert()
    except Exception:
        await _undo_on_broker(broker_identities.remove_device(broker, str(device_id)))
        raise
    logger.info(
        "device %s created by user %s in organization %s", device.id, owner.id, organization
    )
    await audit.record(
        owner,
        "device.create",
        device.id,
        {"name": device.name, "type": device.type},
        owner_id=owner.id,
    )
    return device, credentials


async def get_device(viewer: User, device_id: str, *, action: access.Action = "read") -> Device:
    """One device the viewer may see, and `action`; NotFound for a missing or foreign one
    alike, Forbidden for one it may see but not `action`."""
    object_id = parse_id(device_id, kind="device")
    query = {"_id": object_id, **access.visible_filter(viewer, "device")}
    device = ensure_found(await Device.find_one(query), "Device")
    access.require(viewer, action, "device", device.organization_id)
    return device


async def update_device(
    viewer: User,
    device_id: str,
    *,
    name: str | None,
    type: str | None,
    metadata: MetadataChange = NO_METADATA_CHANGE,
    settings: ApiSettings,
    retention: RetentionChange | None = None,
) -> Device:
    """Rename or retype a device, change its metadata (services.device_metadata), or how
    long its data is kept (services.retention)."""
    device = await get_device(viewer, device_id, action="write")
    changes: dict[str, object] = {}
    if name is not None:
        clean_name = clean_text(name, field="name", max_length=MAX_NAME_LENGTH)
        changes |= {"name": clean_name, "search_keys": name_keys(clean_name)}
    if type is not None:
        changes["type"] = clean_text(type, field="type", max_length=MAX_TYPE_LENGTH)
    changes |= metadata_updates(metadata, attributes_max_bytes=settings.device_attributes_max_bytes)
    if retention is not None:
        changes["retention_days"] = retention.days
    if changes:
        await device.set(changes)
    return device


async def delete_device(
    viewer: User, device_id: str, *, broker: DynsecCommands, redis: Redis, settings: ApiSettings
) -> None:
    """Remove a device and everything that belongs to it, its broker client first."""
    device = await get_device(viewer, device_id, action="write")
    # Broker first: a failure leaves everything as it was, and no credential of a
    # deleted device stays valid at the broker.
    with broker_errors("the device was not deleted"):
        await broker_identities.remove_device(broker, str(device.id))
    # Brokers asking over HTTP refuse it from now on, in every API process.
    await _tell_broker_auth(broker_auth.device_deleted(redis, str(device.id)), device.id)
    await close_device_connections(settings, str(device.id), "device deleted")
    await device.delete()
    # Its data goes after the device, so none outlives a device that is gone: every kind
    # retention knows (readings, and what registers there: logs, rollups).
    await delete_device_data(ensure_found(device.id, "Device"))
    await delete_device_alerts(device.id)
    # Its twin, and the desired document the broker retains for its topic.
    await forget_twin(str(device.id), broker)
    try:
        # Ingest workers drop their cached entry now rather than at its expiry.
        await redis.publish(DEVICE_CHANGES_CHANNEL, str(device.id))
    except RedisError as err:
        logger.warning("device %s deleted, but not announced to the workers: %s", device.id, err)
    logger.info("device %s deleted by user %s", device.id, viewer.id)
    await audit.record(
        viewer,
        "device.delete",
        device.id,
        {"name": device.name, "type": device.type},
        owner_id=device.owner_id,
    )


async def rotate_credentials(
    viewer: User, device_id: str, *, settings: ApiSettings, broker: DynsecCommands, redis: Redis
) -> DeviceCredentials:
    """New MQTT password and token; the old ones stop working at once.

    The broker takes the new password first (closing sessions opened with the old
    one); only then does MongoDB move to the new version. Rotations are limited per
    device and per user each hour: each one rewrites the broker's dynsec config.
    """
    device = await get_device(viewer, device_id, action="write")
    await ratelimit.take(
        redis,
        "rotate-device",
        str(device.id),
        limit=settings.credential_rotations_per_device_hour,
        window_seconds=3600,
    )
    await ratelimit.take(
        redis,
        "rotate-user",
        str(viewer.id),
        limit=settings.credential_rotations_per_user_hour,
        window_seconds=3600,
    )
    old_version = device.credentials_version
    device.credentials_version += 1
    credentials = _new_credentials(device, settings)
    with broker_errors("the credentials were not changed"):
        await broker_identities.set_device_password(
            broker, settings, str(device.id), credentials.mqtt_password
        )
    try:
        result = await Device.get_pymongo_collection().update_one(
            {"_id": device.id, "credentials_version": old_version},
            {
                "$set": {
                    "mqtt_password_hash": device.mqtt_password_hash,
                    "credentials_version": device.credentials_version,
                }
            },
        )
    except Exception:
        old_password = broker_identities.device_password(settings, str(device.id), old_version)
        await _undo_on_broker(
            broker_identities.set_device_password(broker, settings, str(device.id), old_password)
        )
        raise
    if result.matched_count == 0:
        # Rotated (or deleted) concurrently; the other call's outcome stands.
        raise Conflict("The device's credentials changed meanwhile; try again.")
    await _tell_broker_auth(
        broker_auth.device_rotated(redis, str(device.id), device.credentials_version), device.id
    )
    await close_device_connections(settings, str(device.id), "credentials rotated")
    logger.info("credentials of device %s rotated", device.id)
    await audit.record(
        viewer,
        "device.rotate",
        device.id,
        {"credentialsVersion": device.credentials_version},
        owner_id=device.owner_id,
    )
    return credentials


async def authenticate_device_token(
    token: str, *, settings: ApiSettings
) -> tuple[Device, DeviceClaims]:
    """The device a token belongs to, if the token is valid now and not revoked."""
    claims = decode_device_token(token, settings)
    if not PydanticObjectId.is_valid(claims.device_id):
        raise Unauthenticated("Invalid device token.")
    device = await Device.get(PydanticObjectId(claims.device_id))
    if device is None or device.credentials_version != claims.version:
        raise Unauthenticated("Device token revoked.")
    return device, claims


async def verify_device_token(token: str, *, settings: ApiSettings) -> TokenCheck:
    """Whether a device token is valid now; never raises for a bad token."""
    try:
        device, claims = await authenticate_device_token(token, settings=settings)
    except Unauthenticated:
        return TokenCheck(valid=False)
    return TokenCheck(valid=True, device_id=str(device.id), expires_at=claims.expires_at)
