"""The GraphQL endpoint: HTTP, GraphiQL, and both WebSocket protocols.

Over HTTP it speaks application/json and, to clients that ask for it,
application/graphql-response+json with its status codes (api/graphql_response.py).
GraphiQL is the API's own page on vendored files (api/graphiql.py).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.types import ExecutionResult

from api.graphiql import graphiql_page
from api.graphql_response import (
    GRAPHQL_RESPONSE_JSON,
    is_request_error,
    prefers_graphql_response_json,
    request_error_status,
)
from api.state import AppState
from core.settings import ApiSettings
from firmware.upload_guard import FORM_OVERHEAD_BYTES, guard_multipart
from graph.context import Context
from graph.metrics import ApiMetrics
from graph.schema import build_schema
from live.compat import LegacyWSHandler, TransportWSHandler
from live.sharing import SocketWriter
from services.errors import ServiceError


class GraphQLApp(GraphQL[Context, SocketWriter]):
    """strawberry's ASGI app with our context and token check at connection_init."""

    # Malformed WebSocket messages are refused rather than crashing the handler (and
    # each operation's root value is its SocketWriter): api.ws_protocols, live.compat.
    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler

    def __init__(self, settings: ApiSettings, metrics: ApiMetrics) -> None:
        self.metrics = metrics
        # Firmware uploads: the largest image plus the form's other parts.
        self.max_multipart_bytes = settings.firmware_max_bytes + FORM_OVERHEAD_BYTES
        super().__init__(
            build_schema(settings, metrics=metrics),
            # Off by default in production (GRAPHIQL): GET /graphql for a browser is a 404.
            graphql_ide="graphiql" if settings.graphiql else None,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
            connection_init_wait_timeout=timedelta(seconds=10),
            keep_alive=True,
            keep_alive_interval=15,
            max_subscriptions_per_connection=100,
            # uploadFirmware; guarded by firmware.upload_guard (CSRF header, size).
            multipart_uploads_enabled=True,
        )

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket | None
    ) -> Context:
        state: AppState = request.app.state.platform
        return Context(
            request=request,
            response=response,
            settings=state.settings,
            redis=state.redis,
            bus=state.bus,
            broker=state.broker,
            live=state.live,
            metrics=self.metrics,
            sessions=state.sessions,
            commands=state.commands,
        )

    async def render_graphql_ide(self, request: Request) -> Response:
        return graphiql_page()

    # application/graphql-response+json: strawberry answers application/json whatever
    # the Accept header; these three hooks add the spec's media type and status codes.
    # The sub-response carries the choice from the request to create_response.

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        sub_response = await super().get_sub_response(request)
        if prefers_graphql_response_json(request.headers.get("accept")):
            sub_response.media_type = GRAPHQL_RESPONSE_JSON
        return sub_response

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        response = await super().process_result(request, result)
        # Nothing was executed: the new media type has no data entry then (old clients
        # keep their "data": null).
        if is_request_error(result) and prefers_graphql_response_json(
            request.headers.get("accept")
        ):
            response.pop("data", None)
        return response

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        response = super().create_response(response_data, sub_response)
        if sub_response.media_type == GRAPHQL_RESPONSE_JSON:
            response.headers["content-type"] = GRAPHQL_RESPONSE_JSON
            # A status a resolver set on the sub-response stands.
            if (
                not sub_response.status_code
                and isinstance(response_data, dict)
                and "data" not in response_data
            ):
                response.status_code = request_error_status(response_data)
        return response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await guard_multipart(
                scope,
                receive,
                send,
                view=self,
                other=super().__call__,
                max_body_bytes=self.max_multipart_bytes,
            )
            return
        # Open from the handshake until the connection's handler is done with it.
        with self.metrics.websocket_connections.track_inprogress():
            await super().__call__(scope, receive, send)

    async def on_ws_connect(self, context: Context) -> dict[str, Any] | None:
        # The token travels in connection_init; refuse the connection when it is bad.
        try:
            user = await context.authenticate()
            if user is not None:
                # Over the user's WebSocket quota, or revoked meanwhile: refused.
                context.open_socket(user)
        except ServiceError as err:
            raise ConnectionRejectionError({"message": err.message, "code": err.code}) from err
        if user is None:
            raise ConnectionRejectionError(
                {
                    "message": "connection_init must carry an authorization token.",
                    "code": "UNAUTHENTICATED",
                }
            )
        return None
