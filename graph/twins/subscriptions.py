"""Subscriptions of the twin domain: one device's twin after every change, either side."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

import strawberry

from core.twin_events import TwinEvent
from graph.context import Info
from graph.twins.types import DeviceTwin
from live.stream import live_stream
from services import twins


async def _in_order(twins_seen: AsyncGenerator[DeviceTwin]) -> AsyncGenerator[DeviceTwin]:
    # The API and the worker publish after their own writes: an event may arrive after a
    # newer one, and would show an older twin. aclosing: a client leaving closes the live
    # stream (and its Redis subscription) too.
    newest = -1
    async with aclosing(twins_seen) as stream:
        async for twin in stream:
            if twin.revision > newest:
                newest = twin.revision
                yield twin


@strawberry.type
class TwinSubscription:
    @strawberry.subscription(
        description="The device's twin (desired, reported, delta, version) after every "
        "change of desired (users) or reported (the device)."
    )
    async def twin_changed(
        self, info: Info, device_id: strawberry.ID
    ) -> AsyncGenerator[DeviceTwin]:
        # A coroutine returning the stream: refusals (NOT_FOUND...) are subscribe errors.
        viewer = await info.context.require_user()
        feed = await twins.twin_feed(viewer, device_id)
        return _in_order(live_stream(info.context, feed, TwinEvent.decode, DeviceTwin.from_event))
