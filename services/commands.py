"""Device commands for users: send, list, cancel, and the live feed of their changes.

A command belongs to its device's owner (access kind "command"): another user's
device or command is NOT_FOUND, exactly like a missing one. Sending needs write
access to the device. The command is stored QUEUED first; an ONLINE device is sent
it at once (services.command_dispatch), an offline one when it next comes ONLINE.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any, Final, Protocol

import orjson
from pymongo import ReturnDocument

from core.events import all_channel, device_channel, owner_channel
from core.settings import ApiSettings
from firmware.events import EventSink
from models.accounts import User, utcnow
from models.commands import OPEN_STATES, Command, CommandState
from models.devices import Device, DeviceStatus
from services import access, audit
from services.command_queue import publish_command
from services.devices import get_device
from services.errors import BadInput, Conflict, QuotaExceeded
from services.live import Feed
from services.pagination import Page, paginate
from services.validation import ensure_found, parse_id

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS: Final = 3600
MAX_TIMEOUT_SECONDS: Final = 7 * 24 * 3600
NAME: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


class Dispatch(Protocol):
    """Sends a device's QUEUED commands now (services.command_dispatch.CommandDispatcher)."""

    async def drain(self, device_id: Any) -> list[Command]: ...


def _params_json(params: object, settings: ApiSettings) -> str:
    try:
        text = orjson.dumps(params).decode()
    except (TypeError, orjson.JSONEncodeError) as err:
        raise BadInput("params", "must be JSON") from err
    if len(text.encode()) > settings.command_params_max_bytes:
        raise BadInput(
            "params", f"must be at most {settings.command_params_max_bytes} bytes as JSON"
        )
    return text


def _timeout(timeout_seconds: int | None) -> int:
    if timeout_seconds is None:
        return DEFAULT_TIMEOUT_SECONDS
    if not 1 <= timeout_seconds <= MAX_TIMEOUT_SECONDS:
        raise BadInput("timeoutSeconds", f"must be between 1 and {MAX_TIMEOUT_SECONDS}")
    return timeout_seconds


async def send_command(
    viewer: User,
    *,
    device_id: str,
    name: str,
    params: object,
    timeout_seconds: int | None,
    settings: ApiSettings,
    dispatch: Dispatch | None,
    events: EventSink,
) -> Command:
    """Queue a command for a device the viewer may write; an ONLINE device is sent it
    (and anything queued before it) now. The command as it is after that, announced
    when it stays QUEUED (sending announces SENT)."""
    if not NAME.fullmatch(name):
        raise BadInput("name", "must be 1 to 64 of A-Z a-z 0-9 _ . : -")
    params_json = _params_json(params, settings)
    timeout = _timeout(timeout_seconds)
    device = await get_device(viewer, device_id)
    access.require(viewer, "write", "command", device.organization_id)
    online = device.status == DeviceStatus.ONLINE
    # An ONLINE device's queue is sent as it grows; only a device away fills one up.
    if not online:
        waiting = await Command.get_pymongo_collection().count_documents(
            {"device_id": device.id, "state": CommandState.QUEUED},
            limit=settings.commands_queued_per_device_max,
        )
        if waiting >= settings.commands_queued_per_device_max:
            raise QuotaExceeded(
                f"Device {device.id} already has {waiting} commands waiting; cancel some "
                "or let the device come online."
            )
    now = utcnow()
    command = Command(
        device_id=device.id,
        owner_id=device.organization_id,
        name=name,
        params_json=params_json,
        created_at=now,
        expires_at=now + timedelta(seconds=timeout),
    )
    await command.insert()
    logger.info("command %s (%s) for device %s by %s", command.id, name, device.id, viewer.id)
    await audit.record(
        viewer,
        "command.send",
        command.id,
        {"name": name, "deviceId": str(device.id)},
        owner_id=device.owner_id,
    )
    # Without a dispatcher (a bare context), any API process's sweep sends it.
    if dispatch is not None and online:
        for sent in await dispatch.drain(device.id):
            if sent.id == command.id:
                command = sent
    if command.state == CommandState.QUEUED:
        await publish_command(events, command)
    return command


async def list_commands(
    viewer: User, *, device_id: str, state: CommandState | None, first: int, after: str | None
) -> Page[Command]:
    """A visible device's commands, newest first, optionally of one state."""
    device = await get_device(viewer, device_id)
    filters: dict[str, Any] = {
        "device_id": device.id,
        **access.visible_filter(viewer, "command"),
    }
    if state is not None:
        filters["state"] = state.value
    return await paginate(Command, filters, first=first, after=after, newest_first=True)


async def cancel_command(viewer: User, command_id: str, *, events: EventSink) -> Command:
    """QUEUED or SENT -> CANCELLED; Conflict for a command in any other state."""
    object_id = parse_id(command_id, kind="command")
    writable = access.visible_filter(viewer, "command", action="write")
    collection = Command.get_pymongo_collection()
    raw = await collection.find_one_and_update(
        {"_id": object_id, "state": {"$in": list(OPEN_STATES)}, **writable},
        {"$set": {"state": CommandState.CANCELLED, "completed_at": utcnow(), "claim": None}},
        return_document=ReturnDocument.AFTER,
    )
    if raw is None:
        visible = {"_id": object_id, **access.visible_filter(viewer, "command")}
        current = ensure_found(await Command.find_one(visible), "Command")
        access.require(viewer, "write", "command", current.owner_id)
        raise Conflict(f"Command {command_id} is {current.state}; only QUEUED or SENT cancel.")
    command: Command = Command.model_validate(raw)
    await publish_command(events, command)
    logger.info("command %s cancelled by %s", command_id, viewer.id)
    return command


async def command_feed(viewer: User, device_id: str | None) -> Feed:
    """The live command changes the viewer may see: of one device (NotFound unless
    visible), or of all the viewer's devices (an ADMIN's: everyone's)."""
    principal = access.viewer_of(viewer)
    if device_id is not None:
        device: Device = await get_device(viewer, device_id)
        own_id = str(device.id)
        return Feed(device_channel("commands", own_id), principal, "command", device_id=own_id)
    if access.sees_all(viewer, "command"):
        return Feed(all_channel("commands"), principal, "command")
    return Feed(owner_channel("commands", principal.id), principal, "command")
