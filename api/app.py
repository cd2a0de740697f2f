"""The Starlette application and its lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route, WebSocketRoute

from api.graphql import GraphQLApp
from api.health import health
from api.metrics import metrics_endpoint
from api.request_ids import RequestIdMiddleware
from api.state import AppState
from core.broker import BrokerAdmin
from core.bus import open_bus
from core.database import open_database
from core.dynsec import DynamicSecurity
from core.redis import open_redis
from core.settings import Settings, get_settings
from firmware.download import download_firmware
from firmware.runtime import open_firmware
from graph.metrics import ApiMetrics
from services.broker_reconcile import reconcile

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Starlette:
    """The API with every route; connections open in the lifespan."""
    settings = settings or get_settings()
    metrics = ApiMetrics()
    graphql = GraphQLApp(settings, metrics)

    async def reconcile_broker(dynsec: DynamicSecurity) -> None:
        # MongoDB is the source of truth: a broker that lost its state is repaired here.
        await reconcile(dynsec, settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with (
            open_database(settings) as database,
            open_redis(settings) as redis,
            open_bus(settings, redis) as bus,
            BrokerAdmin(settings, on_connect=reconcile_broker) as broker,
            # OTA: the signing key (required in production), offers, the rollout dispatcher.
            open_firmware(settings, bus),
        ):
            state = AppState(
                settings=settings, database=database, redis=redis, bus=bus, broker=broker
            )
            app.state.platform = state
            logger.info("API ready (environment=%s)", settings.environment)
            yield

    # First: the request id is set before anything else logs.
    middleware = [Middleware(RequestIdMiddleware)]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST", "OPTIONS"],
                # GraphQL-Require-Preflight: firmware uploads (firmware/upload_guard.py).
                allow_headers=["Authorization", "Content-Type", "GraphQL-Require-Preflight"],
            )
        )
    return Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/health", health, methods=["GET"]),
            # Devices fetch images here with their device token (firmware/download.py).
            Route("/firmware/{firmware_id}/download", download_firmware, methods=["GET"]),
            # Unauthenticated, like /health: keep it off the public side of the proxy.
            Route("/metrics", metrics_endpoint(metrics), methods=["GET"]),
        ],
        middleware=middleware,
        lifespan=lifespan,
    )
