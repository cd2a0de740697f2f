"""A live feed as a subscription's stream: authorised events to the socket, slow clients closed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable
from typing import Any, Final

from starlette.requests import Request
from starlette.websockets import WebSocket, WebSocketDisconnect
from strawberry.types import Info

from graph.context import Context
from graph.metrics import ApiMetrics
from live.compat import graphql_info
from live.delivery import LiveDelivery
from live.sharing import SharedPlan, SharedResults, SocketWriter
from services.live import Feed, OwnedEvent, watch

logger = logging.getLogger(__name__)

# RFC 6455 "Try Again Later": the client fell too far behind the events.
SLOW_SUBSCRIBER_CODE: Final = 1013
SLOW_SUBSCRIBER_REASON: Final = "subscriber too slow"
# graphql-transport-ws's "Unauthorized": reconnect with a fresh access token.
TOKEN_EXPIRED_CODE: Final = 4401
TOKEN_EXPIRED_REASON: Final = "token expired"  # noqa: S105 - a close reason


class CloseSlowSubscriber:
    """The overflow callback: close the subscriber's WebSocket with 1013, count its loss."""

    def __init__(self, context: Context, *, lost: int) -> None:
        self.connection: Request | WebSocket = context.request
        self.metrics: ApiMetrics = context.metrics
        self.delivery: LiveDelivery = context.live
        self.lost = lost
        self.triggered = False

    def __call__(self) -> None:
        self.triggered = True
        self.metrics.subscriber_overflowed(self.lost)
        if isinstance(self.connection, WebSocket):
            logger.info("closing a subscriber that fell behind (%s)", self.connection.client)
            self.delivery.close_later(close_quietly(self.connection))


async def close_quietly(
    websocket: WebSocket, code: int = SLOW_SUBSCRIBER_CODE, reason: str = SLOW_SUBSCRIBER_REASON
) -> None:
    """Close `websocket` unless it is closed or gone already."""
    try:
        await websocket.close(code=code, reason=reason)
    except (RuntimeError, OSError, WebSocketDisconnect) as err:
        # Already closed or gone: nothing left to release.
        logger.debug("subscriber already disconnected: %s", err)


def _shared_plan(
    shared: SharedResults | None, info: Info[Any, Any] | None
) -> tuple[SharedPlan, SharedResults, SocketWriter] | None:
    if shared is None or info is None:
        return None
    # The operation's root value: set by the WebSocket handlers (live.compat), None
    # over HTTP.
    writer = info.root_value
    if not isinstance(writer, SocketWriter):
        return None
    plan = shared.plan(graphql_info(info), info.schema, writer)
    return None if plan is None else (plan, shared, writer)


async def live_stream[E: OwnedEvent, T](
    context: Context,
    feed: Feed,
    decode: Callable[[bytes], E],
    convert: Callable[[E], T],
    *,
    info: Info[Any, Any] | None = None,
    skip: Callable[[E], bool] | None = None,
) -> AsyncGenerator[T]:
    """The feed's allowed events as GraphQL values, until the client goes away.

    With `info` (a subscription of @shareable types over a WebSocket, whose root value is
    the operation's SocketWriter), each allowed event's result is shared with every
    subscriber of the same selection and written straight to the socket (live.sharing);
    only what cannot be shared is yielded to strawberry. Events `skip` accepts are
    not delivered.
    """
    metrics = context.metrics
    max_buffer = context.settings.subscription_buffer
    # At overflow the bus drops the full buffer and the event that did not fit.
    on_overflow = CloseSlowSubscriber(context, lost=max_buffer + 1)
    sharing = _shared_plan(context.live.shared, info)
    info = None  # not kept for the subscription's life
    expired = gone = False
    with metrics.subscriptions_active.track_inprogress():
        async with watch(
            context.bus, feed, decode, max_buffer=max_buffer, on_overflow=on_overflow
        ) as events:
            async for event in events:
                if skip is not None and skip(event):
                    continue
                if context.session_expired():
                    # No event outlives the token that was shown for it.
                    expired = True
                    break
                metrics.events_delivered.inc()
                if sharing is not None:
                    plan, shared, writer = sharing
                    payload = shared.payload(plan, event, convert)
                    if payload is not None:
                        try:
                            await writer.send(payload)
                        except (RuntimeError, OSError, WebSocketDisconnect) as err:
                            logger.debug("subscriber gone while sending: %s", err)
                            gone = True
                            break
                        continue
                yield convert(event)
    if expired and isinstance(context.request, WebSocket):
        await close_quietly(context.request, TOKEN_EXPIRED_CODE, TOKEN_EXPIRED_REASON)
    if (expired or gone or on_overflow.triggered) and isinstance(context.request, WebSocket):
        # The socket is closing (1013 or 4401) or gone. Ending the stream now would
        # send "complete" on it; strawberry cancels this operation at the disconnect.
        await asyncio.get_running_loop().create_future()
