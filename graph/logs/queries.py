"""Queries of the device logs domain."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from graph.context import Info
from graph.logs.types import DeviceLogConnection
from services import device_logs


@strawberry.type
class DeviceLogQuery:
    @strawberry.field(
        description="Lines a device published on devices/{id}/logs, newest first; from "
        "inclusive, to exclusive."
    )
    async def device_logs(
        self,
        info: Info,
        device_id: strawberry.ID,
        from_: Annotated[datetime | None, strawberry.argument(name="from")] = None,
        to: datetime | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> DeviceLogConnection:
        viewer = await info.context.require_user()
        size = info.context.page_size(first)
        page = await device_logs.list_device_logs(
            viewer, device_id, start=from_, end=to, first=size, after=after
        )
        return DeviceLogConnection.from_page(page)
