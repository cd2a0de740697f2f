"""Subscriptions of the readings domain: live readings and device status."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from core.events import ReadingEvent, StatusEvent
from graph.context import Info
from graph.readings.types import DeviceStatusUpdate, Reading
from live.stream import live_stream
from services import live


@strawberry.type
class ReadingSubscription:
    @strawberry.subscription(
        description="New readings of one device, or (deviceId null) of every device "
        "the caller may see."
    )
    async def reading_added(
        self, info: Info, device_id: strawberry.ID | None = None
    ) -> AsyncGenerator[Reading]:
        # A coroutine returning the stream: refusals (NOT_FOUND...) are subscribe errors.
        viewer = await info.context.require_user()
        feed = await live.feed_for(viewer, "readings", device_id)
        return live_stream(info.context, feed, ReadingEvent.decode, Reading.from_event, info=info)

    @strawberry.subscription(description="Status changes of every device the caller may see.")
    async def device_status_changed(self, info: Info) -> AsyncGenerator[DeviceStatusUpdate]:
        viewer = await info.context.require_user()
        feed = await live.feed_for(viewer, "status")
        return live_stream(
            info.context,
            feed,
            live.decode_status,
            DeviceStatusUpdate.from_event,
            info=info,
            # A reconnect announced while ONLINE is no status change.
            skip=_reconnect,
        )


def _reconnect(event: StatusEvent) -> bool:
    return event.reconnected
