"""Mutations of the commands domain."""

from __future__ import annotations

import strawberry

from graph.commands.types import Command, SendCommandInput
from graph.context import Info
from services import commands


@strawberry.type
class CommandMutation:
    @strawberry.mutation(
        description="Send a command to a device: at once when it is ONLINE, else when it "
        "next connects, until timeoutSeconds have passed (then EXPIRED)."
    )
    async def send_command(self, info: Info, input: SendCommandInput) -> Command:
        viewer = await info.context.require_user()
        command = await commands.send_command(
            viewer,
            device_id=input.device_id,
            name=input.name,
            params=input.params,
            timeout_seconds=input.timeout_seconds,
            settings=info.context.settings,
            dispatch=info.context.commands,
            events=info.context.bus,
        )
        return Command.from_document(command)

    @strawberry.mutation(description="Cancel a QUEUED or SENT command (CONFLICT otherwise).")
    async def cancel_command(self, info: Info, id: strawberry.ID) -> Command:
        viewer = await info.context.require_user()
        command = await commands.cancel_command(viewer, id, events=info.context.bus)
        return Command.from_document(command)
