"""Subscriptions' plumbing: a live feed as a stream of GraphQL values, slow clients closed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable
from typing import Any, Final

from graphql import GraphQLResolveInfo
from starlette.requests import Request
from starlette.websockets import WebSocket, WebSocketDisconnect

from graph.context import Context
from graph.metrics import ApiMetrics
from graph.shared_delivery import direct_socket, shared_plan
from services import live
from services.live import Feed, OwnedEvent

logger = logging.getLogger(__name__)

# RFC 6455 "Try Again Later": the client fell too far behind the events.
SLOW_SUBSCRIBER_CODE: Final = 1013
SLOW_SUBSCRIBER_REASON: Final = "subscriber too slow"
# graphql-transport-ws's "Unauthorized": reconnect with a fresh access token.
TOKEN_EXPIRED_CODE: Final = 4401
TOKEN_EXPIRED_REASON: Final = "token expired"  # noqa: S105 - a close reason

# Close tasks in flight: the loop keeps only weak references to tasks.
_closing: set[asyncio.Task[None]] = set()


class CloseSlowSubscriber:
    """The overflow callback: close the subscriber's WebSocket with 1013, count its loss."""

    def __init__(self, connection: Request | WebSocket, *, metrics: ApiMetrics, lost: int) -> None:
        self.connection = connection
        self.metrics = metrics
        self.lost = lost
        self.triggered = False

    def __call__(self) -> None:
        self.triggered = True
        self.metrics.subscriber_overflowed(self.lost)
        if isinstance(self.connection, WebSocket):
            logger.info("closing a subscriber that fell behind (%s)", self.connection.client)
            task = asyncio.create_task(_close(self.connection))
            _closing.add(task)
            task.add_done_callback(_closing.discard)


async def _close(
    websocket: WebSocket, code: int = SLOW_SUBSCRIBER_CODE, reason: str = SLOW_SUBSCRIBER_REASON
) -> None:
    try:
        await websocket.close(code=code, reason=reason)
    except (RuntimeError, OSError, WebSocketDisconnect) as err:
        # Already closed or gone: nothing left to release.
        logger.debug("slow subscriber already disconnected: %s", err)


async def live_stream[E: OwnedEvent, T](
    context: Context,
    feed: Feed,
    decode: Callable[[bytes], E],
    convert: Callable[[E], T],
    *,
    info: GraphQLResolveInfo[Any] | None = None,
) -> AsyncGenerator[T]:
    """The feed's allowed events as GraphQL values, until the client goes away.

    With `info` (a viewer-independent type's subscription over a WebSocket), each
    allowed event's result is shared with every subscriber of the same selection and
    written straight to the socket (graph.shared_delivery); only what cannot be shared
    is yielded to strawberry.
    """
    metrics = context.metrics
    max_buffer = context.settings.subscription_buffer
    # At overflow the bus drops the full buffer and the event that did not fit.
    on_overflow = CloseSlowSubscriber(context.request, metrics=metrics, lost=max_buffer + 1)
    # The naive baseline (LIVE_SHARED_LISTENER=false) executes per subscriber too.
    direct = direct_socket.get() if context.settings.live_shared_listener else None
    plan = shared_plan(info, direct) if direct is not None and info is not None else None
    expired = gone = False
    with metrics.subscriptions_active.track_inprogress():
        async with live.watch(
            context.bus, feed, decode, max_buffer=max_buffer, on_overflow=on_overflow
        ) as events:
            async for event in events:
                if context.session_expired():
                    # No event outlives the token that was shown for it.
                    expired = True
                    break
                metrics.events_delivered.inc()
                if plan is not None and direct is not None:
                    payload = plan.payload(event, convert)
                    if payload is not None:
                        try:
                            await direct.send(payload)
                        except (RuntimeError, OSError, WebSocketDisconnect) as err:
                            logger.debug("subscriber gone while sending: %s", err)
                            gone = True
                            break
                        continue
                yield convert(event)
    if expired and isinstance(context.request, WebSocket):
        await _close(context.request, TOKEN_EXPIRED_CODE, TOKEN_EXPIRED_REASON)
    if (expired or gone or on_overflow.triggered) and isinstance(context.request, WebSocket):
        # The socket is closing (1013 or 4401) or gone. Ending the stream now would
        # send "complete" on it; strawberry cancels this operation at the disconnect.
        await asyncio.get_running_loop().create_future()
