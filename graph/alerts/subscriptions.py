"""Subscriptions of the alerts domain: alerts raised, and their later changes."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

import strawberry

from core.events import AlertChange, AlertEvent
from graph.alerts.types import Alert
from graph.context import Info
from live.stream import live_stream
from services import alerts


async def _changes(
    events: AsyncGenerator[AlertEvent], wanted: frozenset[AlertChange]
) -> AsyncGenerator[Alert]:
    # aclosing: a client leaving closes the live stream (and its Redis subscription) too.
    async with aclosing(events) as stream:
        async for event in stream:
            if event.change in wanted:
                yield Alert.from_event(event)


def _same(event: AlertEvent) -> AlertEvent:
    return event


@strawberry.type
class AlertSubscription:
    @strawberry.subscription(
        description="Alerts raised on one device, or (deviceId null) on every device the "
        "caller may see."
    )
    async def alert_raised(
        self, info: Info, device_id: strawberry.ID | None = None
    ) -> AsyncGenerator[Alert]:
        viewer = await info.context.require_user()
        feed = await alerts.alert_feed(viewer, device_id)
        events = live_stream(info.context, feed, AlertEvent.decode, _same)
        return _changes(events, frozenset({"raised"}))

    @strawberry.subscription(
        description="Alerts acknowledged or cleared (by their rule or by hand), on one "
        "device or every device the caller may see."
    )
    async def alert_updated(
        self, info: Info, device_id: strawberry.ID | None = None
    ) -> AsyncGenerator[Alert]:
        viewer = await info.context.require_user()
        feed = await alerts.alert_feed(viewer, device_id)
        events = live_stream(info.context, feed, AlertEvent.decode, _same)
        return _changes(events, frozenset({"acknowledged", "cleared"}))
