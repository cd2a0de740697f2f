"""The Starlette application and its lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from api.body_limit import BodyLimitMiddleware
from api.broker_auth import broker_auth_routes
from api.console import CONSOLE_PATH, ConsoleAssets, to_console
from api.data import EXPORT_PATH, IMPORT_PATH, export_readings, import_readings_endpoint
from api.graphiql import ASSETS_PATH as GRAPHIQL_ASSETS_PATH
from api.graphiql import GraphiQLAssets
from api.graphql import GraphQLApp
from api.health import health
from api.mailer import open_mailer
from api.metrics import metrics_endpoint
from api.request_ids import RequestIdMiddleware
from api.security_headers import SecurityHeadersMiddleware
from api.state import AppState
from api.telemetry import TelemetryEndpoint
from core.broker import BrokerAdmin
from core.database import open_database
from core.dynsec import DynamicSecurity
from core.redis import open_redis
from core.settings import ApiSettings, WorkerSettings, get_api_settings, get_worker_settings
from firmware.download import download_firmware
from firmware.runtime import open_firmware
from graph.metrics import ApiMetrics
from graph.sessions import UserSessions
from ingest.http_intake import HTTP_INGEST_REDIS_NAME, HttpIntake
from ingest.stats import IngestStats
from live.bus import open_bus
from live.compat import enter_app, release_handshake
from live.delivery import LiveDelivery
from models.audit import apply_retention as apply_audit_retention
from models.device_logs import apply_retention
from services.broker_identities import api_identities
from services.broker_reconcile import reconcile
from services.command_dispatch import open_commands
from services.device_resync import StateResender
from services.device_search import backfill_search_keys
from services.org_migration import migrate_to_organizations
from services.reading_hours import keyed_since
from services.retention import running_retention

logger = logging.getLogger(__name__)

GRAPHQL_PATH = "/graphql"


class Api(Starlette):
    """Starlette, with WebSockets on /graphql handed straight to the GraphQL app.

    A WebSocket lasts as long as its client, and every frame it passes through stays
    suspended that long: through Starlette's middleware stack and router, each idle
    subscriber kept five of them (README, Performance, Fan-out). Of that stack only the
    request id matters to a WebSocket; any other WebSocket path goes the usual way
    (the router closes it).
    """

    def __init__(self, *, graphql_websocket: ASGIApp, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._graphql_websocket = RequestIdMiddleware(graphql_websocket, accepted=release_handshake)
        # Outermost, so that the server's own error responses carry the headers too.
        self._http = SecurityHeadersMiddleware(super().__call__)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and _route_path(scope) == GRAPHQL_PATH:
            enter_app(scope, self)
            await self._graphql_websocket(scope, receive, send)
            return
        if scope["type"] == "http":
            await self._http(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The path within the app, as Starlette's router matches it (past any root_path)."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path + "/"):
        return path[len(root_path) :]
    return path


def create_app(settings: ApiSettings | None = None) -> Api:
    """The API with every route; connections open in the lifespan."""
    settings = settings or get_api_settings()
    # POST /devices/{id}/telemetry runs the ingest pipeline here: it reads the pipeline's
    # settings as a worker does (INGEST_*, ALERT_*, ANOMALY_*, WEBHOOK_*), from the same
    # environment; a whole-platform ApiSettings (tests, tools) already holds them.
    pipeline = settings if isinstance(settings, WorkerSettings) else get_worker_settings()
    metrics = ApiMetrics()
    # HTTP telemetry's counters: the worker's, in a registry of this app's own.
    ingest_stats = IngestStats()
    graphql = GraphQLApp(settings, metrics)

    # The process's own dynsec identity, bound to its client id (services.broker_identities).
    own = api_identities(settings)
    own_login = (own[0].username, own[0].password) if own else None

    dynsec_identities = settings.broker_identities == "dynsec"

    async def reconcile_broker(dynsec: DynamicSecurity) -> None:
        # MongoDB is the source of truth: a broker that lost its state is repaired here.
        await reconcile(dynsec, settings, api=True)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with (
            open_database(settings) as database,
            open_redis(settings) as redis,
            open_bus(settings, redis) as bus,
            # With BROKER_IDENTITIES=http the broker asks /broker/auth/...: nothing of
            # ours lives in it, so nothing to write and nothing to reconcile.
            BrokerAdmin(
                settings,
                on_connect=reconcile_broker if dynsec_identities else None,
                identity=own_login,
                dynsec=dynsec_identities,
            ) as broker,
            # OTA: the signing key (required in production), offers, the rollout dispatcher.
            open_firmware(settings, bus) as firmware,
            # Each user's WebSockets; closed when the user's role or password changes.
            UserSessions(settings, bus) as sessions,
            # Results its subscribers share, slow subscribers' closes (live.delivery).
            LiveDelivery() as live,
            # POST /devices/{id}/telemetry: the worker's pipeline in this process, on
            # connections of its own name (its alert feed is told from a worker's).
            open_redis(settings, name=HTTP_INGEST_REDIS_NAME) as ingest_redis,
            HttpIntake(settings, pipeline, ingest_redis, stats=ingest_stats) as intake,
            # Deletes data past its retention, one process at a time (services.retention).
            running_retention(settings, redis),
            # Device commands: sent on the broker connection, queued ones on ONLINE, and
            # on ONLINE the desired twin and the current OTA offer again (no retained state).
            open_commands(
                settings,
                broker,
                bus,
                redis,
                on_online=StateResender(
                    broker, firmware.publisher, redis, firmware_base_url=settings.firmware_base_url
                ).on_online,
            ) as commands,
            # E-mail: the outbox sender and the alert reminder check (api/mailer.py).
            open_mailer(settings),
        ):
            # Devices stored before name search existed get their keys (once per database).
            await backfill_search_keys()
            # Users, devices, dashboards, rules, alerts and webhooks stored before
            # organizations: personal organizations (once per database; idempotent).
            await migrate_to_organizations()
            # From when readings carry their hour key (decided once per database).
            await keyed_since()
            # The API owns the device log TTL: one-off commands (api.admin...) leave it be.
            await apply_retention(settings.device_log_retention_days)
            await apply_audit_retention(settings.audit_retention_days)
            state = AppState(
                settings=settings,
                database=database,
                redis=redis,
                bus=bus,
                broker=broker,
                sessions=sessions,
                live=live,
                intake=intake,
                commands=commands,
            )
            app.state.platform = state
            logger.info("API ready (environment=%s)", settings.environment)
            yield

    # First: the request id is set before anything else logs.
    middleware = [
        Middleware(RequestIdMiddleware),
        # Inside the error handler: a body over the limit is a 413, not a 500.
        Middleware(
            BodyLimitMiddleware,
            max_bytes=settings.http_max_body_bytes,
            path_limits={IMPORT_PATH: settings.import_max_body_bytes},
        ),
    ]
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
    return Api(
        graphql_websocket=graphql,
        routes=[
            Route(GRAPHQL_PATH, graphql, methods=["GET", "POST"]),
            # GraphiQL's scripts and styles, vendored (api/graphiql.py, docs/graphiql.md):
            # there only while the page is (GRAPHIQL).
            *([Mount(GRAPHIQL_ASSETS_PATH, app=GraphiQLAssets())] if settings.graphiql else []),
            # The web console (api/console.py, docs/console.md); / leads there.
            Route("/", to_console, methods=["GET"]),
            Mount(CONSOLE_PATH, app=ConsoleAssets(), name="console"),
            Route("/health", health, methods=["GET"]),
            # Devices fetch images here with their device token (firmware/download.py).
            Route("/firmware/{firmware_id}/download", download_firmware, methods=["GET"]),
            # Devices send readings here with their device token (api/telemetry.py).
            Route("/devices/{device_id}/telemetry", TelemetryEndpoint(), methods=["POST"]),
            # Readings out and in, as the user of the access token (api/data.py).
            Route(EXPORT_PATH, export_readings, methods=["GET"]),
            Route(IMPORT_PATH, import_readings_endpoint, methods=["POST"]),
            # Unauthenticated, like /health: keep it off the public side of the proxy.
            Route("/metrics", metrics_endpoint(metrics, ingest_stats.registry), methods=["GET"]),
            # Brokers' HTTP auth backends, with BROKER_AUTH_SECRET only (api/broker_auth.py).
            *broker_auth_routes(settings),
        ],
        middleware=middleware,
        lifespan=lifespan,
    )
