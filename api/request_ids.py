"""A request id for every HTTP request and WebSocket connection, in the logs and the reply.

The caller's `X-Request-ID` is kept when it is a short plain token (a proxy's id
then follows the request through), otherwise a fresh one is made; either way the
response (or the WebSocket accept) carries it back in `X-Request-ID`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.logging import accepted_request_id, request_id

HEADER: Final = "x-request-id"


class RequestIdMiddleware:
    """Pure ASGI: sets core.logging.request_id for the whole request or connection."""

    def __init__(self, app: ASGIApp, *, accepted: Callable[[Send], None] | None = None) -> None:
        self.app = app
        # Told once a WebSocket is accepted, with the server's send.
        self.accepted = accepted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        current = accepted_request_id(Headers(scope=scope).get(HEADER))
        reply_header = (HEADER.encode(), current.encode())
        accepted = self.accepted

        async def send_with_id(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                message = {**message, "headers": [*message.get("headers", []), reply_header]}
                await send(message)
                if accepted is not None and message["type"] == "websocket.accept":
                    accepted(send)
                return
            await send(message)

        previous = request_id.get()
        request_id.set(current)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            # Set back rather than reset by token: tasks spawned here hold copies anyway.
            request_id.set(previous)
