"""A second API, with settings of a test's own, beside the session's server."""

from __future__ import annotations

import asyncio
import base64
import gc
import secrets
import warnings
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import uvicorn
from beanie import init_beanie
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.applications import Starlette

from api.__main__ import server_options
from api.app import create_app
from core.settings import Settings
from models import DOCUMENT_MODELS
from models.devices import Device
from tests.net import free_port


@asynccontextmanager
async def serving(
    settings: Settings, *, port: int, app: Starlette | None = None
) -> AsyncIterator[str]:
    """`app` (default create_app(settings)) served by uvicorn in this process until exit;
    its base URL."""
    config = uvicorn.Config(
        app if app is not None else create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        **server_options(settings),
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def serve_api(settings: Settings) -> AsyncIterator[str]:
    """Serve create_app(settings) on a free port; yield its base URL.

    Beanie's binding is process-wide, and the second app's lifespan rebinds every
    document to its own client (closed when it stops): the session API's binding is
    put back before that client closes, as tests/commands.py does for its instrumented
    client. Afterwards, a read of the session API's background work through the closed
    client would reopen it, and its sockets would be left to the garbage collector
    (a ResourceWarning that fails whichever later test collects it).
    """
    original = Device.get_pymongo_collection().database
    port = free_port()
    # A process of its own at the broker too (its client ids are bound to this name).
    settings = with_settings(settings, api_instance=f"test-{port}")
    try:
        async with AsyncExitStack() as stack:
            url = await stack.enter_async_context(serving(settings, port=port))
            # Runs first on exit: the binding is back before the second app's client closes.
            stack.push_async_callback(
                init_beanie, database=original, document_models=DOCUMENT_MODELS
            )
            yield url
    finally:
        # PyMongo 4.20's AsyncMongoClient.close() can leave a pool socket for the garbage
        # collector (its own suite sees the same, PYTHON-3923): collected here, where it
        # is known to be that, rather than as a ResourceWarning in a later test.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


def with_settings(settings: Settings, **changes: object) -> Settings:
    """`settings` with `changes`, validated again (model_copy would skip the checks)."""
    return Settings(**{**dict(settings), **changes})


def production_settings(settings: Settings, **changes: object) -> Settings:
    """The session's services, configured as production demands (its own JWT and
    firmware signing secrets; the session's device key, already a random one)."""
    key = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return with_settings(
        settings,
        environment="production",
        jwt_secret=secrets.token_urlsafe(48),
        firmware_signing_key=base64.b64encode(key).decode(),
        **changes,
    )
