"""Subscriptions of the firmware domain: a rollout's progress, device by device, live.

The stream starts with every device's current state (read once the live
subscription is confirmed, so nothing in between is missed), then follows the
rollout's channel; services' ProgressView drops what a subscriber was already
shown or what is older than it, and the stream completes once every device has
been shown in a final state. It is live.stream's live_stream with that snapshot
in front (live_stream subscribes lazily, with no place to read it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator

import strawberry
from starlette.websockets import WebSocket, WebSocketDisconnect

from core.events import OtaProgressEvent
from firmware import rollouts
from firmware.progress import ProgressView
from graph.context import Context, Info
from graph.firmware.types import FirmwareUpdateDevice
from live.stream import TOKEN_EXPIRED_CODE, TOKEN_EXPIRED_REASON, CloseSlowSubscriber
from models.accounts import User
from services import live
from services.live import Feed

logger = logging.getLogger(__name__)


@strawberry.type
class FirmwareSubscription:
    @strawberry.subscription(
        description="A rollout's devices: first each one's current state, then every "
        "change; completes once all of them finished. ADMIN only."
    )
    async def firmware_update_progress(
        self, info: Info, id: strawberry.ID
    ) -> AsyncGenerator[FirmwareUpdateDevice]:
        # A coroutine returning the stream: refusals (FORBIDDEN, NOT_FOUND) are subscribe errors.
        viewer = await info.context.require_user()
        feed, device_count = await rollouts.progress_feed(viewer, id)
        return _progress(info.context, viewer, feed, id, device_count)


async def _progress(
    context: Context, viewer: User, feed: Feed, update_id: str, device_count: int
) -> AsyncGenerator[FirmwareUpdateDevice]:
    metrics = context.metrics
    max_buffer = context.settings.subscription_buffer
    on_overflow = CloseSlowSubscriber(context, lost=max_buffer + 1)
    shown = ProgressView(device_count)
    expired = False
    with metrics.subscriptions_active.track_inprogress():
        async with live.watch(
            context.bus,
            feed,
            OtaProgressEvent.decode,
            max_buffer=max_buffer,
            on_overflow=on_overflow,
        ) as events:
            for event in await rollouts.progress_snapshot(viewer, update_id):
                if shown.accept(event):
                    metrics.events_delivered.inc()
                    yield FirmwareUpdateDevice.from_event(event)
            if not shown.finished:
                async for event in events:
                    if context.session_expired():
                        expired = True
                        break
                    if shown.accept(event):
                        metrics.events_delivered.inc()
                        yield FirmwareUpdateDevice.from_event(event)
                        if shown.finished:
                            break
    if not isinstance(context.request, WebSocket):
        return
    if expired:
        try:
            await context.request.close(code=TOKEN_EXPIRED_CODE, reason=TOKEN_EXPIRED_REASON)
        except (RuntimeError, OSError, WebSocketDisconnect) as err:
            logger.debug("subscriber already disconnected: %s", err)
    if expired or on_overflow.triggered:
        # The socket is closing; ending the stream would send "complete" on it.
        await asyncio.get_running_loop().create_future()
