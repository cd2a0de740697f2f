"""Security headers on every HTTP response (WebSockets have no use for them).

The Content-Security-Policy allows what the GraphiQL page needs, served from this
origin: its scripts and styles (inline styles too), data: images and fonts, and
fetches and WebSockets back to the API. HSTS only on responses to requests that came
over TLS, as uvicorn sees them (the scheme a trusted proxy reports, FORWARDED_ALLOW_IPS).
A response that sets one of these headers keeps its own: the web console's files carry
a stricter policy (api/console.py: no inline style either).
"""

from __future__ import annotations

from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self' ws: wss:; "
    "frame-ancestors 'none'"
)
HEADERS: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
)
HSTS: Final = (b"strict-transport-security", b"max-age=31536000")


class SecurityHeadersMiddleware:
    """Pure ASGI: adds HEADERS (and HSTS over TLS) where a response has not set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = (*HEADERS, HSTS) if scope.get("scheme") == "https" else HEADERS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(header for header in extra if header[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
