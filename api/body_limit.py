"""Request bodies over a byte limit answered 413 before anything parses them.

Checked twice: a declared Content-Length over the limit is refused without reading a
byte; a body that arrives without one (chunked) is counted as it is read, and refused
once it passes the limit. Multipart bodies (firmware uploads) have a limit of their
own, sized for images (firmware.upload_guard), and pass through untouched.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class _BodyTooLarge(Exception):
    """Raised from `receive` into the app, which has no business handling it."""


class BodyLimitMiddleware:
    """Pure ASGI: HTTP request bodies of at most `max_bytes`, else 413."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if headers.get("content-type", "").lower().startswith("multipart/form-data"):
            await self.app(scope, receive, send)
            return
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if started:  # the app answered before reading it all: nothing left to say
                return
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Connection: close, so the server does not read the rest to reach the next request.
        response = PlainTextResponse(
            f"Request body over {self.max_bytes} bytes.",
            status_code=413,
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)
