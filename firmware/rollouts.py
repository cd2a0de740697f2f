"""Rollouts (firmware updates): start, read, cancel, and settle their overall state.

A rollout is a FirmwareUpdate and one FirmwareUpdateTarget per device. Devices
move PENDING -> DISPATCHED (firmware.dispatcher) -> DOWNLOADING -> VERIFYING ->
INSTALLING -> SUCCEEDED, or to FAILED (a report, or the per-device timeout) or
CANCELLED; firmware.progress applies those moves, this module decides what they
mean for the rollout:

- every device finished: SUCCEEDED, or FAILED when any did not succeed;
- abort criteria: once `failure_min_devices` devices finished and more than
  `max_failure_rate` of them failed, a RUNNING rollout is PAUSED: nothing more is
  dispatched, devices in flight finish or time out, and it can be cancelled;
- cancel: the rollout is CANCELLED and every device not yet started (PENDING or
  DISPATCHED) is CANCELLED with it; devices already downloading or installing go
  on and report (a device cannot be stopped halfway through flashing).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from beanie import PydanticObjectId
from pymongo import ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError

from core.events import OtaProgressEvent, ota_update_channel
from core.settings import ApiSettings
from firmware.events import EventSink, progress_event, publish_progress
from firmware.images import get_firmware
from models.accounts import User, utcnow
from models.devices import Device
from models.firmware import (
    ACTIVE_UPDATE_STATES,
    IN_FLIGHT,
    TERMINAL,
    Firmware,
    FirmwareUpdate,
    FirmwareUpdateTarget,
    TargetState,
    UpdateState,
)
from services import access, audit
from services.errors import BadInput, Conflict, Forbidden, NotFound
from services.live import Feed
from services.validation import ensure_found, parse_id

logger = logging.getLogger(__name__)

INSERT_BATCH = 100
MAX_DEVICE_TIMEOUT_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True, slots=True, kw_only=True)
class RolloutOptions:
    """Per-rollout overrides of the settings' defaults (None: the default)."""

    devices_per_minute: int | None = None
    device_timeout_seconds: int | None = None
    max_failure_rate: float | None = None
    failure_min_devices: int | None = None


@dataclass(frozen=True, slots=True)
class UpdateView:
    """A rollout with its devices (in dispatch order) and its firmware (None once deleted)."""

    update: FirmwareUpdate
    targets: list[FirmwareUpdateTarget]
    firmware: Firmware | None


def _pace(settings: ApiSettings, options: RolloutOptions) -> dict[str, int | float]:
    def pick[T: (int, float)](value: T | None, default: T, field: str, low: T, high: T) -> T:
        chosen = default if value is None else value
        if not low <= chosen <= high:
            raise BadInput(field, f"must be between {low} and {high}")
        return chosen

    return {
        "devices_per_minute": pick(
            options.devices_per_minute,
            settings.firmware_devices_per_minute,
            "devicesPerMinute",
            1,
            60_000,
        ),
        "device_timeout_seconds": pick(
            options.device_timeout_seconds,
            settings.firmware_device_timeout_seconds,
            "deviceTimeoutSeconds",
            1,
            MAX_DEVICE_TIMEOUT_SECONDS,
        ),
        "max_failure_rate": pick(
            options.max_failure_rate, settings.firmware_max_failure_rate, "maxFailureRate", 0.0, 1.0
        ),
        "failure_min_devices": pick(
            options.failure_min_devices,
            settings.firmware_failure_min_devices,
            "failureMinDevices",
            1,
            settings.firmware_update_max_devices,
        ),
    }


async def _devices(device_ids: list[str], settings: ApiSettings) -> list[Device]:
    unique = list(dict.fromkeys(device_ids))
    if not unique:
        raise BadInput("deviceIds", "must name at least one device")
    if len(unique) > settings.firmware_update_max_devices:
        raise BadInput(
            "deviceIds", f"at most {settings.firmware_update_max_devices} devices per rollout"
        )
    ids = [
        parse_id(value, kind="device", field=f"deviceIds[{n}]") for n, value in enumerate(unique)
    ]
    found = {d.id: d for d in await Device.find({"_id": {"$in": ids}}).to_list()}
    if len(found) != len(ids):
        raise NotFound("Device")
    return [found[PydanticObjectId(i)] for i in ids]


async def _discard(update_id: PydanticObjectId) -> None:
    await FirmwareUpdateTarget.get_pymongo_collection().delete_many({"update_id": update_id})
    await FirmwareUpdate.get_pymongo_collection().delete_one({"_id": update_id})


async def start_update(
    viewer: User,
    *,
    firmware_id: str,
    device_ids: list[str],
    settings: ApiSettings,
    options: RolloutOptions | None = None,
) -> UpdateView:
    """Roll an image out to devices of its type; each device may be in one rollout at a time."""
    access.require(viewer, "write", "firmware")
    firmware = await get_firmware(firmware_id, field="firmwareId")
    pace = _pace(settings, options or RolloutOptions())
    devices = await _devices(device_ids, settings)
    for n, device in enumerate(devices):
        if device.type != firmware.device_type:
            raise BadInput(
                f"deviceIds[{n}]",
                f"is a {device.type!r} device; this firmware is for {firmware.device_type!r}",
            )
    busy = await FirmwareUpdateTarget.find_one(
        {"device_id": {"$in": [d.id for d in devices]}, "active": True}
    )
    if busy is not None:
        raise Conflict(
            f"Device {busy.device_id} is still in firmware update {busy.update_id}; "
            "cancel it or let it finish first."
        )
    update_id = PydanticObjectId()
    targets = [
        FirmwareUpdateTarget(
            update_id=update_id,
            device_id=device.id,
            owner_id=device.owner_id,
            firmware_id=firmware.id,
            version=firmware.version,
            position=n,
        )
        for n, device in enumerate(devices)
    ]
    update = FirmwareUpdate(
        id=update_id,
        firmware_id=firmware.id,
        firmware_version=firmware.version,
        device_type=firmware.device_type,
        device_count=len(targets),
        created_by=viewer.id,
        **pace,
    )
    try:
        # Targets first: the dispatcher finds work through the rollout document.
        for start in range(0, len(targets), INSERT_BATCH):
            await FirmwareUpdateTarget.insert_many(targets[start : start + INSERT_BATCH])
        await update.insert()
    except (BulkWriteError, DuplicateKeyError) as err:
        # The one-active-rollout-per-device index: a concurrent start took a device.
        await _discard(update_id)
        raise Conflict("A device is already in another firmware update; try again.") from err
    except BaseException:
        await _discard(update_id)
        raise
    # deleteFirmware claims the image before it checks for rollouts; this checks after
    # inserting, so with both at once one of them backs off.
    if await Firmware.find_one({"_id": firmware.id, "deleting": False}) is None:
        await _discard(update_id)
        raise NotFound("Firmware")
    logger.info(
        "firmware update %s started by %s: %s %s to %d devices",
        update_id,
        viewer.id,
        firmware.device_type,
        firmware.version,
        len(targets),
    )
    await audit.record(
        viewer,
        "firmware.rollout",
        update_id,
        {
            "firmwareId": str(firmware.id),
            "deviceType": firmware.device_type,
            "version": firmware.version,
            "deviceCount": len(targets),
        },
    )
    return UpdateView(update=update, targets=targets, firmware=firmware)


async def get_update(viewer: User, update_id: str) -> UpdateView:
    """One rollout with its devices; NotFound otherwise."""
    access.require(viewer, "read", "firmware")
    return await _load_update(update_id)


async def progress_feed(viewer: User, update_id: str) -> tuple[Feed, int]:
    """The live feed of one rollout's progress, and how many devices it has."""
    view = await get_update(viewer, update_id)
    update_id = str(view.update.id)
    feed = Feed(ota_update_channel(update_id), access.viewer_of(viewer), "firmware")
    return feed, view.update.device_count


async def _load_update(update_id: str) -> UpdateView:
    object_id = parse_id(update_id, kind="firmware update")
    update = ensure_found(await FirmwareUpdate.get(object_id), "Firmware update")
    targets = await FirmwareUpdateTarget.find({"update_id": update.id}).sort("position").to_list()
    firmware = await Firmware.find_one({"_id": update.firmware_id, "deleting": False})
    return UpdateView(update=update, targets=targets, firmware=firmware)


async def cancel_update(viewer: User, update_id: str, *, events: EventSink) -> UpdateView:
    """Cancel a running or paused rollout and every device of it not yet started.

    Cancelling a cancelled rollout changes nothing; a finished one is a Conflict.
    """
    access.require(viewer, "write", "firmware")
    object_id = parse_id(update_id, kind="firmware update")
    now = utcnow()
    raw = await FirmwareUpdate.get_pymongo_collection().find_one_and_update(
        {"_id": object_id, "state": {"$in": list(ACTIVE_UPDATE_STATES)}},
        {"$set": {"state": UpdateState.CANCELLED, "has_pending": False, "updated_at": now}},
    )
    if raw is None:
        view = await _load_update(update_id)
        if view.update.state == UpdateState.CANCELLED:
            return view
        raise Conflict(f"Firmware update {update_id} has finished ({view.update.state}).")
    targets = FirmwareUpdateTarget.get_pymongo_collection()
    cancelled = {"state": TargetState.CANCELLED, "error": "cancelled", "deadline": None}
    # Never offered: released at once. Offered: released once the dispatcher has
    # cleared the retained offer at the broker.
    await targets.update_many(
        {"update_id": object_id, "state": TargetState.PENDING, "offer_retained": False},
        {"$set": {**cancelled, "active": False, "updated_at": now}},
    )
    await targets.update_many(
        {
            "update_id": object_id,
            "state": {"$in": [TargetState.PENDING, TargetState.DISPATCHED]},
        },
        {"$set": {**cancelled, "updated_at": now}},
    )
    view = await _load_update(update_id)
    for target in view.targets:
        if target.state == TargetState.CANCELLED and target.updated_at >= now:
            await publish_progress(events, target)
    logger.info("firmware update %s cancelled", update_id)
    await audit.record(
        viewer, "firmware.cancel", object_id, {"firmwareVersion": view.update.firmware_version}
    )
    return view


async def _state_counts(update_id: PydanticObjectId) -> Counter[str]:
    cursor = await FirmwareUpdateTarget.get_pymongo_collection().aggregate(
        [{"$match": {"update_id": update_id}}, {"$group": {"_id": "$state", "n": {"$sum": 1}}}]
    )
    return Counter({row["_id"]: int(row["n"]) async for row in cursor})


async def settle(update_id: PydanticObjectId) -> UpdateState | None:
    """Finish or pause a rollout once its devices say so; its new state, or None."""
    update = await FirmwareUpdate.get(update_id)
    if update is None or update.state not in ACTIVE_UPDATE_STATES:
        return None
    counts = await _state_counts(update_id)
    failed = counts[TargetState.FAILED]
    finished = counts[TargetState.SUCCEEDED] + failed
    new_state: UpdateState | None = None
    if sum(counts[state] for state in TERMINAL) >= update.device_count:
        clean = failed == 0 and counts[TargetState.CANCELLED] == 0
        new_state = UpdateState.SUCCEEDED if clean else UpdateState.FAILED
    elif (
        update.state == UpdateState.RUNNING
        and finished >= update.failure_min_devices
        and failed / finished > update.max_failure_rate
    ):
        new_state = UpdateState.PAUSED
    if new_state is None:
        return None
    result = await FirmwareUpdate.get_pymongo_collection().update_one(
        {"_id": update_id, "state": update.state},
        {"$set": {"state": new_state, "updated_at": datetime.now(UTC)}},
    )
    if result.modified_count == 0:
        return None  # changed meanwhile (cancelled, or settled by another process)
    logger.info(
        "firmware update %s %s (%d of %d finished devices failed)",
        update_id,
        new_state,
        failed,
        finished,
    )
    return new_state


async def claim_dispatch(now: datetime) -> FirmwareUpdate | None:
    """One running rollout whose next device is due, its next slot moved on (atomically:
    several API processes may dispatch, each device slot goes to one of them)."""
    collection = FirmwareUpdate.get_pymongo_collection()
    query = {"state": UpdateState.RUNNING, "has_pending": True, "next_dispatch_at": {"$lte": now}}
    for _ in range(5):  # lost races: another process claimed that slot
        raw = await collection.find_one(query, sort=[("next_dispatch_at", 1)])
        if raw is None:
            return None
        update: FirmwareUpdate = FirmwareUpdate.model_validate(raw)
        following = now.timestamp() + 60.0 / update.devices_per_minute
        result = await collection.update_one(
            {"_id": update.id, "next_dispatch_at": raw["next_dispatch_at"]},
            {"$set": {"next_dispatch_at": datetime.fromtimestamp(following, UTC)}},
        )
        if result.modified_count == 1:
            return update
    return None


async def claim_next_target(update: FirmwareUpdate, now: datetime) -> FirmwareUpdateTarget | None:
    """The rollout's next PENDING device, now DISPATCHED (a conditional update: each
    device goes to one claimer); None, and the rollout marked so, when none is left."""
    raw = await FirmwareUpdateTarget.get_pymongo_collection().find_one_and_update(
        {"update_id": update.id, "state": TargetState.PENDING},
        {
            "$set": {
                "state": TargetState.DISPATCHED,
                # Set before the offer is published: a crash after it still gets it cleared.
                "offer_retained": True,
                "dispatched_at": now,
                "deadline": now + timedelta(seconds=update.device_timeout_seconds),
                "updated_at": now,
            }
        },
        sort=[("position", 1)],
        return_document=ReturnDocument.AFTER,
    )
    if raw is None:
        await FirmwareUpdate.get_pymongo_collection().update_one(
            {"_id": update.id, "state": UpdateState.RUNNING}, {"$set": {"has_pending": False}}
        )
        return None
    target: FirmwareUpdateTarget = FirmwareUpdateTarget.model_validate(raw)
    return target


async def downloadable_firmware(device_id: PydanticObjectId, firmware_id: str) -> Firmware:
    """The image a device may download now: one a rollout offered it and it has not
    finished with. Forbidden otherwise, a missing image included (nothing to probe)."""
    if not PydanticObjectId.is_valid(firmware_id) or len(firmware_id) != 24:
        raise Forbidden("This device has no firmware update for that image.")
    object_id = PydanticObjectId(firmware_id)
    target = await FirmwareUpdateTarget.find_one(
        {"device_id": device_id, "firmware_id": object_id, "state": {"$in": list(IN_FLIGHT)}}
    )
    firmware = await Firmware.find_one({"_id": object_id, "deleting": False}) if target else None
    if firmware is None:
        raise Forbidden("This device has no firmware update for that image.")
    return firmware


async def progress_snapshot(viewer: User, update_id: str) -> list[OtaProgressEvent]:
    """Every device's current state, as the events a subscriber starts from."""
    view = await get_update(viewer, update_id)
    return [progress_event(target) for target in view.targets]


__all__ = [
    "RolloutOptions",
    "UpdateView",
    "cancel_update",
    "claim_dispatch",
    "claim_next_target",
    "downloadable_firmware",
    "get_update",
    "progress_feed",
    "progress_snapshot",
    "settle",
    "start_update",
]
