"""WebSocket protocol handlers that refuse malformed messages instead of failing on them.

strawberry's handlers index into every message as if it were well formed: a JSON array
or number, an id that is not a string, or a payload that is not an object raises
TypeError out of the ASGI app (the socket drops without a close frame and the error is
logged as a crash), or fails the operation's task with nothing said to the client.
These check a message's shape first. graphql-transport-ws closes the connection with
4400, as it does for every other invalid message; legacy graphql-ws ignores it, as it
ignores unparsable JSON.

They also give strawberry's refusal of a subscription over the per-connection limit
the contract's code (RATE_LIMITED): it carried no code at all. Operations are limited
per user too, across the user's sockets (graph.sessions), with the same answer; a
closed socket stops counting against its user's WebSocket quota.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler

from graph.context import Context
from graph.errors import RATE_LIMITED
from graph.shared_delivery import DirectSocket, direct_socket

logger = logging.getLogger(__name__)

# strawberry's message when a connection already has max_subscriptions_per_connection.
SUBSCRIPTION_LIMIT_MESSAGE: Final = "Subscription limit reached"
USER_LIMIT_MESSAGE: Final = "Subscription limit per user reached"


def _user_limit_error() -> dict[str, Any]:
    return {"message": USER_LIMIT_MESSAGE, "extensions": {"code": RATE_LIMITED}}


def _code_limit_error(error: object) -> None:
    if (
        isinstance(error, dict)
        and error.get("message") == SUBSCRIPTION_LIMIT_MESSAGE
        and "extensions" not in error
    ):
        error["extensions"] = {"code": RATE_LIMITED}


def _operation_well_formed(message: dict[str, Any]) -> bool:
    payload = message.get("payload")
    return (
        isinstance(message.get("id"), str)
        and isinstance(payload, dict)
        and isinstance(payload.get("query"), str)
        and isinstance(payload.get("variables"), dict | None)
        and isinstance(payload.get("operationName"), str | None)
        and isinstance(payload.get("extensions"), dict | None)
    )


def well_formed(message: object, *, start: str, stop: str) -> bool:
    """Whether strawberry can handle `message` (the `start`/`stop` types of a protocol)."""
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return False
    if message["type"] == start:
        return _operation_well_formed(message)
    if message["type"] == stop:
        return isinstance(message.get("id"), str)
    return True


def _direct(
    websocket: object,
    *,
    operation_id: str,
    message_type: str,
    query: str,
    name: str | None,
    variables: dict[str, Any] | None,
) -> None:
    """Let this operation's task write shared results straight to the socket."""
    if isinstance(websocket, ASGIWebSocketAdapter):
        direct_socket.set(
            DirectSocket.for_operation(
                websocket.ws.send_text,
                operation_id=operation_id,
                message_type=message_type,
                query=query,
                operation_name=name,
                variables=variables,
            )
        )


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws: a malformed message closes the connection with 4400."""

    async def handle(self) -> None:
        try:
            await super().handle()
        finally:
            self.context.close_socket()

    async def handle_subscribe(self, message: Any) -> None:
        known = message["id"] in self.operations
        if self.connection_acknowledged and not known and not self.context.operation_allowed():
            payload = [_user_limit_error()]
            await self.send_message({"id": message["id"], "type": "error", "payload": payload})
            return
        await super().handle_subscribe(message)
        operation = self.operations.get(message["id"])
        if not known and operation is not None and operation.task is not None:
            self.context.track_operation(operation.task)

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        # The operation's own task: the context variable is this operation's alone.
        _direct(
            self.websocket,
            operation_id=operation.id,
            message_type="next",
            query=operation.query,
            name=operation.operation_name,
            variables=operation.variables,
        )
        await super().run_operation(operation)

    async def send_message(self, message: Any) -> None:
        if message.get("type") == "error":
            for error in message.get("payload") or ():
                _code_limit_error(error)
        await super().send_message(message)

    async def handle_message(self, message: Any) -> None:
        if not well_formed(message, start="subscribe", stop="complete"):
            await self.handle_invalid_message("Invalid message")
            return
        await super().handle_message(message)


class LegacyWSHandler(BaseGraphQLWSHandler[Context, None]):
    """graphql-ws: a malformed message is ignored, like one that is not JSON."""

    async def handle(self) -> None:
        try:
            await super().handle()
        finally:
            self.context.close_socket()

    async def handle_start(self, message: Any) -> None:
        if self.connection_acknowledged and not self.context.operation_allowed():
            payload = _user_limit_error()
            await self.send_message({"id": message["id"], "type": "error", "payload": payload})
            return
        await super().handle_start(message)
        task = self.tasks.get(message["id"])
        if task is not None:
            self.context.track_operation(task)

    async def handle_async_results(
        self,
        operation_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, object] | None,
    ) -> None:
        # The operation's own task: the context variable is this operation's alone.
        _direct(
            self.websocket,
            operation_id=operation_id,
            message_type="data",
            query=query,
            name=operation_name,
            variables=variables,
        )
        await super().handle_async_results(operation_id, query, operation_name, variables)

    async def send_message(self, message: Any) -> None:
        if message.get("type") == "error":
            _code_limit_error(message.get("payload"))
        await super().send_message(message)

    async def handle_message(self, message: Any) -> None:
        if not well_formed(message, start="start", stop="stop"):
            logger.debug("ignored a malformed graphql-ws message")
            return
        await super().handle_message(message)
