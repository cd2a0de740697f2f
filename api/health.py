"""`GET /health`: each dependency probed, 503 when any of them is down."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse

from api.state import AppState
from core.database import ping

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_SECONDS = 2.0


async def _probe(name: str, check: Callable[[], Awaitable[object]]) -> tuple[str, str]:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            await check()
    except Exception as err:  # noqa: BLE001 - any failure means "down"
        logger.warning("health: %s is down (%s)", name, type(err).__name__)
        return name, "down"
    return name, "ok"


async def _mqtt_probe(state: AppState) -> None:
    # The API's own admin connection: "ok" means device identities can be managed now.
    if not state.broker.connected:
        raise ConnectionError("no admin connection to the MQTT broker")


async def health(request: Request) -> JSONResponse:
    """Report every service; degraded (503) when one is not answering."""
    state: AppState = request.app.state.platform
    results = await asyncio.gather(
        _probe("mongodb", lambda: ping(state.database)),
        _probe("redis", lambda: state.redis.ping()),
        _probe("mqtt", lambda: _mqtt_probe(state)),
    )
    services = dict(results)
    ok = all(status == "ok" for status in services.values())
    return JSONResponse(
        {"status": "ok" if ok else "degraded", "services": services},
        status_code=200 if ok else 503,
    )
