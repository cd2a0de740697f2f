"""Queries of the commands domain."""

from __future__ import annotations

import strawberry

from graph.commands.types import Command
from graph.context import Info
from graph.pagination import Connection
from models.commands import CommandState
from services import commands


@strawberry.type
class CommandQuery:
    @strawberry.field(description="One device's commands, newest first.")
    async def commands(
        self,
        info: Info,
        device_id: strawberry.ID,
        state: CommandState | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[Command]:
        viewer = await info.context.require_user()
        size = info.context.page_size(first)
        page = await commands.list_commands(
            viewer, device_id=device_id, state=state, first=size, after=after
        )
        return Connection[Command].from_page(page, Command.from_document)
