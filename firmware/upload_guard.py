"""Multipart requests to /graphql (firmware uploads): CSRF header and body size, at the door.

Enabling the GraphQL multipart request spec opens two doors that JSON requests
do not (strawberry's 0.243.0 advisory, CVE-2024-47082):

- CSRF: a browser sends `multipart/form-data` cross-site without a preflight. We
  require a header no HTML form can set (`GraphQL-Require-Preflight`, or Apollo's
  `Apollo-Require-Preflight` / `X-Apollo-Operation-Name`); with any of them a
  cross-origin browser request is preflighted, and CORS decides.
- Size: Starlette spools the whole form to a temporary file before any resolver
  (and so before authentication) runs. The body is cut off, with 413, once it
  passes the firmware size limit plus room for the form's other parts; the exact
  limit is then enforced while the image streams into GridFS (BAD_USER_INPUT).

A multipart request is run through strawberry's view here, with a Request of
our own, so the files Starlette spooled are closed once it is answered (strawberry
leaves them to the garbage collector, which warns about each one).
"""

from __future__ import annotations

from typing import Any, Final

from cross_web import HTTPException
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send
from strawberry.asgi import GraphQL

from api.body_limit import serve_limited

PREFLIGHT_HEADERS: Final = (
    "graphql-require-preflight",
    "apollo-require-preflight",
    "x-apollo-operation-name",
)
# The `operations` and `map` parts and the part headers (Starlette caps each
# non-file part at 1 MiB already).
FORM_OVERHEAD_BYTES: Final = 1024 * 1024


async def guard_multipart(
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    view: GraphQL[Any, Any],
    other: ASGIApp,
    max_body_bytes: int,
) -> None:
    """Serve a multipart HTTP request with `view`, refusing it without the CSRF header
    (400) or with a body over `max_body_bytes` (413); pass any other one to `other`."""
    headers = Headers(scope=scope)
    if not headers.get("content-type", "").lower().startswith("multipart/"):
        await other(scope, receive, send)
        return
    if not any(headers.get(name) for name in PREFLIGHT_HEADERS):
        response = PlainTextResponse(
            "Multipart requests must carry a GraphQL-Require-Preflight header (CSRF protection).",
            status_code=400,
        )
        await response(scope, receive, send)
        return

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        await _serve(view, scope, receive, send)

    await serve_limited(serve, scope, receive, send, max_bytes=max_body_bytes)


async def _serve(view: GraphQL[Any, Any], scope: Scope, receive: Receive, send: Send) -> None:
    """strawberry's own HTTP path (strawberry.asgi.GraphQL.__call__), closing the form after."""
    request = Request(scope, receive=receive)
    try:
        response: Response = await view.run(request)
    except HTTPException as err:
        response = PlainTextResponse(err.reason, status_code=err.status_code)
    finally:
        await request.close()
    await response(scope, receive, send)
