"""The command state machine's writes, shared by the API (send, expire) and the worker
(results): each move is one conditional write on one command.

- claim_next: the device's oldest QUEUED command that has not expired becomes SENT,
  with a claim token (find_one_and_update): whichever process claims it sends it, and
  only that one; an expired command is never claimed.
- unclaim: a claimed command whose publish failed goes back to QUEUED (its claimer only).
- expire_due: QUEUED or SENT commands past expires_at become EXPIRED, a bounded batch.
- apply_result: a device's answer moves its SENT command to SUCCEEDED or FAILED.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson
from bson import ObjectId
from pymongo import ReturnDocument
from redis.exceptions import RedisError

from core.events import CommandEvent, channels_for
from firmware.events import EventSink
from models.commands import OPEN_STATES, Command, CommandState

logger = logging.getLogger(__name__)

type ResultRejectReason = Literal["unknown", "wrong_device", "not_sent"]


class ResultRejected(Exception):
    """A device answer that cannot apply; `reason` says why."""

    def __init__(self, reason: ResultRejectReason) -> None:
        super().__init__(reason)
        self.reason: ResultRejectReason = reason


@dataclass(frozen=True, slots=True)
class DeviceAnswer:
    """One parsed devices/{id}/commands/{commandId}/result message."""

    ok: bool
    result_json: str | None  # the `result` as compact JSON text (ok only)
    error: str | None  # (not ok only)


def command_topic(device_id: str, command_id: str) -> str:
    return f"devices/{device_id}/commands/{command_id}"


def device_payload(command: Command) -> bytes:
    """What the device is sent (contract/devices.md): id, name, params, expiresAt."""
    return orjson.dumps(
        {
            "id": str(command.id),
            "name": command.name,
            "params": orjson.Fragment(command.params_json),
            "expiresAt": command.expires_at.isoformat(),
        }
    )


def command_event(command: Command) -> CommandEvent:
    """The command's current state as a live event."""
    return CommandEvent(
        command_id=str(command.id),
        device_id=str(command.device_id),
        owner_id=str(command.owner_id),
        name=command.name,
        params_json=command.params_json,
        state=command.state.value,
        result_json=command.result_json,
        error=command.error,
        created_at=command.created_at,
        sent_at=command.sent_at,
        completed_at=command.completed_at,
        expires_at=command.expires_at,
    )


async def publish_command(sink: EventSink, command: Command) -> bool:
    """Announce a stored change on the device, owner and all-devices channels; False
    when pub/sub is away (the change itself is in MongoDB)."""
    event = command_event(command)
    payload = event.encode()
    try:
        for channel in channels_for("commands", event.device_id, event.owner_id):
            await sink.publish(channel, payload)
    except (RedisError, OSError) as err:
        logger.warning("command %s %s, but not announced: %s", event.command_id, event.state, err)
        return False
    return True


def _loaded(raw: dict[str, Any] | None) -> Command | None:
    return Command.model_validate(raw) if raw is not None else None


async def claim_next(device_id: ObjectId, now: datetime) -> Command | None:
    """The device's oldest unexpired QUEUED command, now SENT under a fresh claim token."""
    raw = await Command.get_pymongo_collection().find_one_and_update(
        {"device_id": device_id, "state": CommandState.QUEUED, "expires_at": {"$gt": now}},
        {"$set": {"state": CommandState.SENT, "sent_at": now, "claim": uuid.uuid4().hex}},
        sort=[("created_at", 1), ("_id", 1)],
        return_document=ReturnDocument.AFTER,
    )
    return _loaded(raw)


async def unclaim(command: Command) -> bool:
    """Put a claimed command whose publish failed back in line (unless it moved on)."""
    result = await Command.get_pymongo_collection().update_one(
        {"_id": command.id, "state": CommandState.SENT, "claim": command.claim},
        {"$set": {"state": CommandState.QUEUED, "sent_at": None, "claim": None}},
    )
    return result.modified_count == 1


async def has_queued(device_id: ObjectId, now: datetime) -> bool:
    """Whether the device has a QUEUED command claim_next would take."""
    raw = await Command.get_pymongo_collection().find_one(
        {"device_id": device_id, "state": CommandState.QUEUED, "expires_at": {"$gt": now}},
        {"_id": 1},
    )
    return raw is not None


async def queued_devices(
    after: ObjectId | None, limit: int
) -> tuple[set[ObjectId], ObjectId | None]:
    """Devices of the next `limit` QUEUED commands after `after` (in _id order), and where
    the next scan goes on from (None: from the start again)."""
    query: dict[str, Any] = {"state": CommandState.QUEUED}
    if after is not None:
        query["_id"] = {"$gt": after}
    cursor = (
        Command.get_pymongo_collection()
        .find(query, {"device_id": 1})
        .sort([("state", 1), ("_id", 1)])
        .limit(limit)
    )
    rows = await cursor.to_list()
    devices = {row["device_id"] for row in rows}
    return devices, (rows[-1]["_id"] if len(rows) == limit else None)


async def expire_due(now: datetime, limit: int) -> list[Command]:
    """Move up to `limit` open commands past expires_at to EXPIRED; the ones this call moved."""
    collection = Command.get_pymongo_collection()
    due = await (
        collection.find({"state": {"$in": list(OPEN_STATES)}, "expires_at": {"$lte": now}})
        .sort([("state", 1), ("expires_at", 1)])
        .limit(limit)
        .to_list()
    )
    expired = []
    for raw in due:
        moved = await collection.find_one_and_update(
            {"_id": raw["_id"], "state": raw["state"]},
            {"$set": {"state": CommandState.EXPIRED, "completed_at": now, "claim": None}},
            return_document=ReturnDocument.AFTER,
        )
        if moved is not None:  # else: answered, cancelled or expired meanwhile elsewhere
            expired.append(Command.model_validate(moved))
    return expired


async def apply_result(
    device_id: str, command_id: str, answer: DeviceAnswer, now: datetime
) -> Command:
    """Store a device's answer to its SENT command; ResultRejected when it does not apply
    (no such command, another device's, or not SENT: answered, expired, cancelled)."""
    if not ObjectId.is_valid(command_id) or len(command_id) != 24:
        raise ResultRejected("unknown")
    key = ObjectId(command_id)
    device = ObjectId(device_id)
    state = CommandState.SUCCEEDED if answer.ok else CommandState.FAILED
    collection = Command.get_pymongo_collection()
    raw = await collection.find_one_and_update(
        {"_id": key, "device_id": device, "state": CommandState.SENT},
        {
            "$set": {
                "state": state,
                "result_json": answer.result_json,
                "error": answer.error,
                "completed_at": now,
            }
        },
        return_document=ReturnDocument.AFTER,
    )
    if raw is not None:
        stored: Command = Command.model_validate(raw)
        return stored
    current = await collection.find_one({"_id": key}, {"device_id": 1})
    if current is None:
        raise ResultRejected("unknown")
    if current["device_id"] != device:
        raise ResultRejected("wrong_device")
    raise ResultRejected("not_sent")
