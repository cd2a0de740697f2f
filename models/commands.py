"""Commands sent to devices: one document per command, its whole life in MongoDB.

QUEUED -> SENT -> SUCCEEDED | FAILED; QUEUED or SENT -> EXPIRED | CANCELLED. Every
move is one conditional write whose filter names the states it may come from, so
any number of API processes and workers apply them without a lock, and a restart
loses nothing. `params` and `result` are kept as JSON text: a device's JSON may use
keys MongoDB treats specially (`$set`, `a.b`), and the size limits are on that text.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Final

import pymongo
from beanie import Document, PydanticObjectId
from pydantic import Field

from models.accounts import utcnow


class CommandState(StrEnum):
    QUEUED = "QUEUED"  # waiting for the device to be ONLINE
    SENT = "SENT"  # published to the device; its answer not in yet
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"  # expires_at passed while QUEUED or SENT
    CANCELLED = "CANCELLED"


OPEN_STATES: Final = (CommandState.QUEUED, CommandState.SENT)


class Command(Document):
    device_id: PydanticObjectId
    owner_id: PydanticObjectId  # the device's organization when the command was sent (access)
    name: str
    params_json: str = "null"
    state: CommandState = CommandState.QUEUED
    result_json: str | None = None
    error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None
    completed_at: datetime | None = None
    expires_at: datetime
    # Who holds the QUEUED -> SENT claim (a token per claim): only that claimer puts
    # the command back in line when its publish fails.
    claim: str | None = None

    class Settings:
        name = "commands"
        indexes = [
            # commands(deviceId, state), newest first.
            pymongo.IndexModel([("device_id", 1), ("state", 1), ("_id", -1)]),
            pymongo.IndexModel([("device_id", 1), ("_id", -1)]),
            # The next QUEUED command of a device, in creation order.
            pymongo.IndexModel([("device_id", 1), ("state", 1), ("created_at", 1)]),
            # The expiry sweep.
            pymongo.IndexModel([("state", 1), ("expires_at", 1)]),
            # The sweep's scan of QUEUED commands for devices that are ONLINE.
            pymongo.IndexModel([("state", 1), ("_id", 1)]),
        ]
