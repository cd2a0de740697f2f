"""Request bodies over a byte limit answered 413 before anything parses them.

Checked twice: a declared Content-Length over the limit is refused without reading a
byte; a body that arrives without one (chunked) is counted as it is read, and refused
once it passes the limit. Multipart bodies (firmware uploads) have a limit of their
own, sized for images, enforced with the same function (firmware.upload_guard).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class _BodyTooLarge(Exception):
    """Raised from `receive` into the app, which has no business handling it."""


async def serve_limited(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, *, max_bytes: int
) -> None:
    """Serve an HTTP request with `app`, answering 413 instead once its body is over
    `max_bytes` (declared, or counted as it arrives)."""
    declared = Headers(scope=scope).get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        await _refuse(scope, receive, send, max_bytes)
        return
    received = 0
    started = False

    async def counting_receive() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > max_bytes:
                raise _BodyTooLarge
        return message

    async def tracking_send(message: Message) -> None:
        nonlocal started
        started = started or message["type"] == "http.response.start"
        await send(message)

    try:
        await app(scope, counting_receive, tracking_send)
    except _BodyTooLarge:
        if not started:  # else the app answered before reading it all: nothing to add
            await _refuse(scope, receive, send, max_bytes)


async def _refuse(scope: Scope, receive: Receive, send: Send, max_bytes: int) -> None:
    # Connection: close, so the server does not read the rest to reach the next request.
    response = PlainTextResponse(
        f"Request body over {max_bytes} bytes.",
        status_code=413,
        headers={"Connection": "close"},
    )
    await response(scope, receive, send)


class BodyLimitMiddleware:
    """Pure ASGI: HTTP request bodies of at most `max_bytes` (or the path's own limit in
    `path_limits`: imports), else 413."""

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, path_limits: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = path_limits or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (
            Headers(scope=scope).get("content-type", "").lower().startswith("multipart/form-data")
        ):
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(scope["path"], self.max_bytes)
        await serve_limited(self.app, scope, receive, send, max_bytes=limit)
