"""`GET /export/readings` and `POST /import/readings` (contract/devices.md, docs/data.md).

Both act as the user of the `Authorization: Bearer` access token, with the same access
decision as GraphQL (a device the caller may not see is 404, as NOT_FOUND). Errors are
`{"error": message, "code": contract code}` with the matching HTTP status.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from api.state import AppState
from models.accounts import User
from models.api_keys import ApiKeyScope
from services.accounts import user_from_access_token_subject
from services.api_keys import authenticate_api_key, is_api_key
from services.errors import Forbidden, ServiceError, Unauthenticated
from services.exports import open_export, parse_format, parse_time
from services.imports import import_readings
from services.tokens import bearer_token, decode_access_claims

logger = logging.getLogger(__name__)

EXPORT_PATH = "/export/readings"
IMPORT_PATH = "/import/readings"

_STATUS = {
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "BAD_USER_INPUT": 400,
    "RATE_LIMITED": 429,
    "QUERY_TOO_COMPLEX": 400,
}


async def _caller(request: Request, state: AppState, *scopes: ApiKeyScope) -> User:
    """The user of the request's access token, or of its API key when the key carries
    one of `scopes` (READ for export; INGEST or WRITE for import: the contract's
    CreateApiKey). Unauthenticated without a valid one; Forbidden for a key without."""
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise Unauthenticated()
    if is_api_key(token):
        grant = await authenticate_api_key(token, None, settings=state.settings)
        if not any(grant.has(scope) for scope in scopes):
            raise Forbidden(f"This API key lacks the {' or '.join(scopes)} scope.")
        return grant.user
    claims = decode_access_claims(token, state.settings)
    return await user_from_access_token_subject(
        claims.user_id, session_version=claims.session_version
    )


def _failure(err: ServiceError) -> Response:
    status = _STATUS.get(err.code, 500)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": err.message, "code": err.code}, status, headers=headers)


async def export_readings(request: Request) -> Response:
    """A device's readings in [from, to), oldest first, streamed (CSV or JSON Lines)."""
    state: AppState = request.app.state.platform
    params = request.query_params
    try:
        viewer = await _caller(request, state, ApiKeyScope.READ)
        export = await open_export(
            viewer,
            params.get("deviceId", ""),
            start=parse_time(params.get("from"), field="from"),
            end=parse_time(params.get("to"), field="to"),
            format=parse_format(params.get("format")),
        )
    except ServiceError as err:
        return _failure(err)
    return StreamingResponse(
        export.chunks(),
        media_type=export.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{export.filename}"',
            "Cache-Control": "no-store",
        },
    )


async def import_readings_endpoint(request: Request) -> Response:
    """Store the body's readings; `{"stored": n, "dropped": {reason: n}}`."""
    state: AppState = request.app.state.platform
    params = request.query_params
    try:
        viewer = await _caller(request, state, ApiKeyScope.INGEST, ApiKeyScope.WRITE)
        result = await import_readings(
            viewer,
            params.get("deviceId", ""),
            request.stream(),
            format=parse_format(params.get("format")),
            settings=state.settings,
        )
    except ServiceError as err:
        return _failure(err)
    return JSONResponse({"stored": result.stored, "dropped": dict(result.dropped)})
