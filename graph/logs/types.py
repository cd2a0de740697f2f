"""GraphQL types of device log lines."""

from __future__ import annotations

from datetime import datetime
from typing import Self

import strawberry

from core.events import LogEvent
from graph.pagination import Edge, PageInfo
from live.sharing import shareable
from models.device_logs import DeviceLog as DeviceLogDocument
from models.device_logs import LogLevel
from services.device_logs import DeviceLogPage

strawberry.enum(LogLevel, description="A log line's level (docs/devices.md#logs).")


@shareable
@strawberry.type(description="One line a device published on devices/{id}/logs.")
class DeviceLog:
    device_id: strawberry.ID
    timestamp: datetime
    level: LogLevel
    message: str

    @classmethod
    def from_document(cls, line: DeviceLogDocument) -> Self:
        return cls(
            device_id=strawberry.ID(str(line.device_id)),
            timestamp=line.timestamp,
            level=line.level,
            message=line.message,
        )

    @classmethod
    def from_event(cls, event: LogEvent) -> Self:
        return cls(
            device_id=strawberry.ID(event.device_id),
            timestamp=event.timestamp,
            level=LogLevel(event.level),
            message=event.message,
        )


@strawberry.type(description="Newest first.")
class DeviceLogConnection:
    edges: list[Edge[DeviceLog]]
    page_info: PageInfo

    @classmethod
    def from_page(cls, page: DeviceLogPage) -> Self:
        return cls(
            edges=[
                Edge(cursor=cursor, node=DeviceLog.from_document(item))
                for cursor, item in zip(page.cursors, page.items, strict=True)
            ],
            page_info=PageInfo(
                has_next_page=page.has_next_page,
                end_cursor=page.cursors[-1] if page.cursors else None,
            ),
        )
