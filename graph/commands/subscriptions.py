"""Subscriptions of the commands domain: every state change of a command."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from core.events import CommandEvent
from graph.commands.types import Command
from graph.context import Info
from live.stream import live_stream
from services import commands


@strawberry.type
class CommandSubscription:
    @strawberry.subscription(
        description="Every state change of the commands of one device, or (deviceId null) "
        "of every device the caller may see."
    )
    async def command_updated(
        self, info: Info, device_id: strawberry.ID | None = None
    ) -> AsyncGenerator[Command]:
        viewer = await info.context.require_user()
        feed = await commands.command_feed(viewer, device_id)
        return live_stream(info.context, feed, CommandEvent.decode, Command.from_event)
