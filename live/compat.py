"""Other projects' internals, in one quarantine: every override of a framework's internal
behaviour and every read of a private attribute in the product is here.

Each names the version it was written for (WRITTEN_FOR). tests/unit/live/test_compat.py
fails when an installed version differs from it, and checks the attribute, signature
or behaviour each one relies on, so an upgrade shows what to look at again. The
overrides made for speed or memory stay only while their gain shows (measured with and
without each one: docs/performance.md, "Framework overrides"); prefer an upstream hook
when one appears.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Generator
from types import TracebackType
from typing import Any, Final

import strawberry
from graphql import GraphQLResolveInfo, GraphQLSchema
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from starlette.types import Scope, Send
from starlette.websockets import WebSocket
from strawberry.extensions import SchemaExtension
from strawberry.extensions.context import ExecutingContextManager, OperationContextManager
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.types import ExecutionContext, Info
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from api.ws_protocols import code_limit_error, user_limit_error, well_formed
from graph.context import Context
from live.sharing import SocketWriter

logger = logging.getLogger(__name__)

# Distribution name -> the version every override below was written for and checked on.
WRITTEN_FOR: Final = {
    "redis": "8.2.0",
    "starlette": "1.10.0",
    "strawberry-graphql": "0.341.2",
    "uvicorn": "0.55.0",
}


# --- redis 8.2.0 ---------------------------------------------------------------------


def connection_stream(connection: AbstractConnection) -> asyncio.StreamReader:
    """The connection's socket stream, for live.redis_bus to read whole chunks and parse
    them itself (PushReplies): redis-py's parser awaits the stream once per line of every
    reply (docs/performance.md, "RESP receive"). redis 8.2.0 keeps it as `_reader`;
    nothing of redis-py's is buffered in front of it on a connection that only reads
    pushes."""
    stream: asyncio.StreamReader | None = connection._reader
    if stream is None:
        raise RedisConnectionError("the pub/sub connection is not open")
    return stream


# --- strawberry-graphql 0.341.2: private attributes -----------------------------------


def graphql_info(info: Info[Any, Any]) -> GraphQLResolveInfo[Any]:
    """graphql-core's info behind strawberry's (`Info._raw_info` in 0.341.2): the field
    nodes, fragments and variables a shared plan is built from (live.sharing)."""
    raw: GraphQLResolveInfo[Any] = info._raw_info
    return raw


def graphql_schema(schema: strawberry.Schema) -> GraphQLSchema:
    """graphql-core's schema behind strawberry's (`Schema._schema` in 0.341.2)."""
    built: GraphQLSchema = schema._schema
    return built


# --- strawberry-graphql 0.341.2: the extension runner ----------------------------------


class _OperationHooks(OperationContextManager):
    """A hook stage that stays open for a whole subscription, its generator hooks driven
    directly, as strawberry's exit stack drives them: entered in order, exited in
    reverse, an exception thrown into each, a new one replacing it.

    strawberry wraps every hook of every operation in a context manager of its own (a
    wrapper function with its copied attributes, a bound method, an exit stack): ~6 KiB
    per idle subscription for its five on_operation hooks. A stage with any hook that
    is not a plain generator function gets strawberry's own handling.
    (tests/unit/graph/test_operation_hooks.py compares both, hook by hook.)
    """

    __slots__ = ("_extensions", "_generators", "_lean")

    def __init__(self, extensions: list[SchemaExtension]) -> None:
        default = getattr(SchemaExtension, self.HOOK_NAME)
        hooks = [getattr(type(extension), self.HOOK_NAME) for extension in extensions]
        self._lean = all(h is default or inspect.isgeneratorfunction(h) for h in hooks)
        self._generators: list[Generator[None]] = []
        self._extensions: list[SchemaExtension] = []
        if not self._lean:
            super().__init__(extensions)
            return
        self._extensions = [e for e, h in zip(extensions, hooks, strict=True) if h is not default]

    def __enter__(self) -> None:
        if not self._lean:
            super().__enter__()
            return
        extensions, self._extensions = self._extensions, []
        for extension in extensions:
            generator: Generator[None] = getattr(extension, self.HOOK_NAME)()
            try:
                next(generator)
            except StopIteration:
                error = RuntimeError("generator didn't yield")
                self._unwind(error)
                raise error from None
            except BaseException as error:
                self._unwind(error)
                raise
            self._generators.append(generator)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._lean:
            super().__exit__(exc_type, exc, tb)
            return
        self._unwind(exc)

    async def __aenter__(self) -> None:
        if not self._lean:
            await super().__aenter__()
            return
        self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._lean:
            await super().__aexit__(exc_type, exc, tb)
            return
        self._unwind(exc)

    def _unwind(self, exc: BaseException | None) -> None:
        """Exit the entered hooks, last first; raises what a hook raised instead of `exc`
        (like strawberry's stage, the caller's `exc` goes on even if a hook swallowed it)."""
        pending = exc
        generators, self._generators = self._generators, []
        for generator in reversed(generators):
            try:
                if pending is None:
                    next(generator)
                else:
                    generator.throw(pending)
            except StopIteration:
                pending = None
                continue
            except BaseException as error:  # noqa: BLE001 - handed to the next hook
                if error is not pending:
                    error.__context__ = pending
                pending = error
                continue
            pending = RuntimeError("generator didn't stop")
        if pending is not None and pending is not exc:
            raise pending


class _ExecutingHooks(_OperationHooks):
    __slots__ = ()
    HOOK_NAME = ExecutingContextManager.HOOK_NAME


class _LeanRunner(SchemaExtensionsRunner):
    """strawberry's runner, with the stages that last as long as a subscription lean."""

    def operation(self) -> OperationContextManager:
        return _OperationHooks(self.extensions)

    def executing(self) -> ExecutingContextManager:
        return _ExecutingHooks(self.extensions)  # type: ignore[return-value]


class LeanHooksSchema(strawberry.Schema):
    """strawberry's schema whose operation and execution hooks cost less per open
    subscription (`create_extensions_runner`, an internal factory in 0.341.2)."""

    def create_extensions_runner(
        self, execution_context: ExecutionContext, extensions: list[SchemaExtension]
    ) -> SchemaExtensionsRunner:
        return _LeanRunner(execution_context=execution_context, extensions=extensions)


# --- strawberry-graphql 0.341.2: the WebSocket protocol handlers ----------------------
#
# Subclassed for api.ws_protocols' checks and refusals, the per-user quotas
# (graph.sessions), and each operation's root value: its SocketWriter, so that
# live.stream can write shared results straight to the socket. strawberry passes
# `self.root_value` to the schema once per operation, before its first await, in
# run_operation (graphql-transport-ws) and handle_async_results (graphql-ws); setting
# it just before makes it that operation's own.


def _writer(
    context: Context,
    *,
    operation_id: str,
    message_type: str,
    query: str,
    operation_name: str | None,
    variables: dict[str, Any] | None,
) -> SocketWriter | None:
    websocket = context.request
    if not isinstance(websocket, WebSocket):
        return None
    return SocketWriter.for_operation(
        websocket.send_text,
        operation_id=operation_id,
        message_type=message_type,
        query=query,
        operation_name=operation_name,
        variables=variables,
    )


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, SocketWriter]):
    """graphql-transport-ws: a malformed message closes the connection with 4400."""

    async def handle(self) -> None:
        try:
            await super().handle()
        finally:
            self.context.close_socket()

    async def handle_subscribe(self, message: Any) -> None:
        known = message["id"] in self.operations
        if self.connection_acknowledged and not known and not self.context.operation_allowed():
            payload = [user_limit_error()]
            await self.send_message({"id": message["id"], "type": "error", "payload": payload})
            return
        await super().handle_subscribe(message)
        operation = self.operations.get(message["id"])
        if not known and operation is not None and operation.task is not None:
            self.context.track_operation(operation.task)

    async def run_operation(self, operation: Operation[Context, SocketWriter]) -> None:
        self.root_value = _writer(
            self.context,
            operation_id=operation.id,
            message_type="next",
            query=operation.query,
            operation_name=operation.operation_name,
            variables=operation.variables,
        )
        await super().run_operation(operation)

    async def send_message(self, message: Any) -> None:
        if message.get("type") == "error":
            for error in message.get("payload") or ():
                code_limit_error(error)
        await super().send_message(message)

    async def handle_message(self, message: Any) -> None:
        if not well_formed(message, start="subscribe", stop="complete"):
            await self.handle_invalid_message("Invalid message")
            return
        await super().handle_message(message)


class LegacyWSHandler(BaseGraphQLWSHandler[Context, SocketWriter]):
    """graphql-ws: a malformed message is ignored, like one that is not JSON."""

    async def handle(self) -> None:
        try:
            await super().handle()
        finally:
            self.context.close_socket()

    async def handle_start(self, message: Any) -> None:
        if self.connection_acknowledged and not self.context.operation_allowed():
            payload = user_limit_error()
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
        self.root_value = _writer(
            self.context,
            operation_id=operation_id,
            message_type="data",
            query=query,
            operation_name=operation_name,
            variables=variables,
        )
        await super().handle_async_results(operation_id, query, operation_name, variables)

    async def send_message(self, message: Any) -> None:
        if message.get("type") == "error":
            code_limit_error(message.get("payload"))
        await super().send_message(message)

    async def handle_message(self, message: Any) -> None:
        if not well_formed(message, start="start", stop="stop"):
            logger.debug("ignored a malformed graphql-ws message")
            return
        await super().handle_message(message)


# --- uvicorn 0.55.0 ---------------------------------------------------------------------


def release_handshake(send: Send) -> None:
    """Let go of the opening handshake (headers both ways, ~3 KiB) once accepted.

    uvicorn's websockets-sansio protocol keeps the request and its response for the
    connection's life, and reads them only until the accept is sent; the ASGI `send`
    it hands the app is its own bound method.
    """
    protocol = getattr(send, "__self__", None)
    if isinstance(protocol, WebSocketsSansIOProtocol):
        protocol.request = None  # type: ignore[assignment]
        protocol.response = None  # type: ignore[assignment]


# --- starlette 1.10.0 -----------------------------------------------------------------


def enter_app(scope: Scope, app: object) -> None:
    """What Starlette.__call__ does before its middleware stack: `request.app` (the
    lifespan's state) reads scope["app"]. For a route served past the stack."""
    scope["app"] = app
