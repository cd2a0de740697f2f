"""`POST /devices/{id}/telemetry`: a device's readings over HTTP, the MQTT topic's rules.

The transport only (ingest/http_intake.py holds the guarantees). In order, each
refusal before any work the next step would cost:

1. a body declared (or counted, chunked) over the payload limit: 413, unread
   (api/body_limit.py with `ingest.payloads.MAX_PAYLOAD_BYTES`);
2. the process at its bound: 503 with Retry-After;
3. no valid device token, or one revoked by rotation or deletion: 401
   (services.devices.authenticate_device_token, as firmware downloads); or an API key
   (`iotk_...`, services.api_keys) that is invalid: 401, or lacks the INGEST scope: 403;
4. a token of another device than the path's: 404, whether that device exists or
   not -- a device sends only as itself, as the broker's ACLs say; an API key sends for
   the devices its owner may change, any other is 404 alike;
5. the device over its rate: 429 with Retry-After;
6. a body slower to arrive than HTTP_INGEST_TIMEOUT_SECONDS: 408;
   one that breaks the contract: 400 `{"error": reason}` (the drop reason);
7. stored: 202 `{"accepted": n}`; storage too slow or full: 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Final

from pymongo.errors import PyMongoError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from api.body_limit import serve_limited
from api.state import AppState
from ingest.devices import DeviceInfo
from ingest.http_intake import HttpIntake, Overloaded, Refused
from ingest.payloads import MAX_PAYLOAD_BYTES, Rejected
from models.api_keys import ApiKeyScope
from services.access import device_may_send
from services.api_keys import PREFIX as API_KEY_PREFIX
from services.api_keys import authenticate_api_key
from services.devices import authenticate_device_token, get_device
from services.errors import Forbidden, NotFound, Unauthenticated
from services.tokens import bearer_token

logger = logging.getLogger(__name__)

# Printable ASCII, as the header's usual form (a UUID, a counter) needs; bounded.
IDEMPOTENCY_KEY: Final = re.compile(r"[\x21-\x7e]{1,128}")


def _answer(intake: HttpIntake, status: int, body: dict[str, object], **headers: str) -> Response:
    intake.responses.labels(status=str(status)).inc()
    return JSONResponse(body, status_code=status, headers=headers or None)


def _refused(intake: HttpIntake, refused: Refused) -> Response:
    return _answer(
        intake,
        refused.status,
        {"error": refused.reason},
        **{"Retry-After": str(refused.retry_after)},
    )


async def _authenticated(request: Request, state: AppState) -> DeviceInfo:
    """The device the request may send as: its device token's (Unauthenticated
    otherwise), or with an INGEST API key the path's device, when the key's owner may
    change it (NotFound otherwise; Forbidden without the scope)."""
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise Unauthenticated("A device token is required.")
    if token.startswith(API_KEY_PREFIX):
        grant = await authenticate_api_key(token, ApiKeyScope.INGEST, settings=state.settings)
        path_id = request.path_params["device_id"]
        device = await get_device(grant.user, path_id, action="write")
    else:
        device, _claims = await authenticate_device_token(token, settings=state.settings)
    return DeviceInfo(str(device.id), str(device.organization_id), device.status)


async def post_telemetry(request: Request) -> Response:
    """Store a device's readings; 202 once they are stored."""
    state: AppState = request.app.state.platform
    intake = state.intake
    try:
        with intake.slot():
            try:
                device = await _authenticated(request, state)
            except Unauthenticated as err:
                return _answer(
                    intake, 401, {"error": err.message}, **{"WWW-Authenticate": "Bearer"}
                )
            except Forbidden as err:
                return _answer(intake, 403, {"error": err.message})
            except NotFound:
                return _answer(intake, 404, {"error": "Device not found."})
            if not device_may_send(device.device_id, request.path_params["device_id"]):
                return _answer(intake, 404, {"error": "Device not found."})
            key = request.headers.get("idempotency-key")
            if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
                return _answer(intake, 400, {"error": "bad_idempotency_key"})
            intake.check_rate(device.device_id)
            try:
                # A slow sender holds one of the process's places: not for longer.
                async with asyncio.timeout(state.settings.http_ingest_timeout_seconds):
                    payload = await request.body()
            except TimeoutError:
                return _answer(intake, 408, {"error": "body_timeout"}, Connection="close")
            accepted = await intake.submit(device, payload, idempotency_key=key)
    except Rejected as rejected:
        return _answer(intake, 400, {"error": rejected.reason})
    except Refused as refused:
        return _refused(intake, refused)
    except PyMongoError as err:
        # The token's device could not be read: nothing was accepted.
        logger.warning("telemetry refused, database unavailable: %s", err)
        return _refused(intake, Overloaded("database_unavailable", 1))
    return _answer(intake, 202, {"accepted": accepted})


async def _handle(scope: Scope, receive: Receive, send: Send) -> None:
    response = await post_telemetry(Request(scope, receive))
    await response(scope, receive, send)


class TelemetryEndpoint:
    """The route's ASGI app (a class: Starlette wraps a plain function as a request
    handler): the payload limit first, then `post_telemetry`."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await serve_limited(_handle, scope, receive, send, max_bytes=MAX_PAYLOAD_BYTES)
