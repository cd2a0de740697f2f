"""Subscriptions of the device logs domain."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from core.events import LogEvent
from graph.context import Info
from graph.logs.types import DeviceLog
from live.stream import live_stream
from services import live


@strawberry.type
class DeviceLogSubscription:
    @strawberry.subscription(description="Each new line of one device, once it is stored.")
    async def device_log_added(
        self, info: Info, device_id: strawberry.ID
    ) -> AsyncGenerator[DeviceLog]:
        # A coroutine returning the stream: refusals (NOT_FOUND...) are subscribe errors.
        viewer = await info.context.require_user()
        feed = await live.feed_for(viewer, "logs", device_id)
        return live_stream(info.context, feed, LogEvent.decode, DeviceLog.from_event, info=info)
