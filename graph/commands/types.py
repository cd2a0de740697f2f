"""GraphQL types of device commands."""

from __future__ import annotations

from datetime import datetime
from typing import Self

import orjson
import strawberry
from strawberry.scalars import JSON

from core.events import CommandEvent
from live.sharing import shareable
from models.commands import Command as CommandDocument
from models.commands import CommandState

strawberry.enum(CommandState)


def _json(text: str | None) -> JSON | None:
    return None if text is None else JSON(orjson.loads(text))


@shareable
@strawberry.type(
    description="A command to one device: QUEUED -> SENT -> SUCCEEDED | FAILED; QUEUED or "
    "SENT -> EXPIRED | CANCELLED."
)
class Command:
    id: strawberry.ID
    device_id: strawberry.ID
    name: str
    params: JSON | None
    state: CommandState
    result: JSON | None = strawberry.field(description="The device's `result` (SUCCEEDED).")
    error: str | None = strawberry.field(description="The device's `error` (FAILED).")
    created_at: datetime
    sent_at: datetime | None
    completed_at: datetime | None
    expires_at: datetime

    @classmethod
    def from_document(cls, command: CommandDocument) -> Self:
        return cls(
            id=strawberry.ID(str(command.id)),
            device_id=strawberry.ID(str(command.device_id)),
            name=command.name,
            params=_json(command.params_json),
            state=command.state,
            result=_json(command.result_json),
            error=command.error,
            created_at=command.created_at,
            sent_at=command.sent_at,
            completed_at=command.completed_at,
            expires_at=command.expires_at,
        )

    @classmethod
    def from_event(cls, event: CommandEvent) -> Self:
        return cls(
            id=strawberry.ID(event.command_id),
            device_id=strawberry.ID(event.device_id),
            name=event.name,
            params=_json(event.params_json),
            state=CommandState(event.state),
            result=_json(event.result_json),
            error=event.error,
            created_at=event.created_at,
            sent_at=event.sent_at,
            completed_at=event.completed_at,
            expires_at=event.expires_at,
        )


@strawberry.input
class SendCommandInput:
    device_id: strawberry.ID
    name: str = strawberry.field(description="1 to 64 of A-Z a-z 0-9 _ . : -")
    params: JSON | None = strawberry.field(
        default=None, description="Any JSON, at most COMMAND_PARAMS_MAX_BYTES as text."
    )
    timeout_seconds: int | None = strawberry.field(
        default=None, description="Default 3600, at most 7 days: then EXPIRED."
    )
