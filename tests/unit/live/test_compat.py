"""live.compat's assumptions about other projects' internals, checked on what is installed.

The first test fails as soon as a dependency is not the version compat was written
for: then read what the others check, look at the new version's code, and update
WRITTEN_FOR. The others check the attribute, signature or behaviour each override
relies on, so they say which one broke.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncGenerator, Iterator
from datetime import timedelta
from importlib.metadata import version
from typing import Any

import pytest
import strawberry
from graphql import GraphQLResolveInfo, GraphQLSchema
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.extensions import SchemaExtension
from strawberry.extensions.context import ExecutingContextManager, OperationContextManager
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from live import compat
from live.sharing import SocketWriter


@pytest.mark.parametrize("distribution", sorted(compat.WRITTEN_FOR))
def test_keep_compat_written_for_installed_version(distribution: str) -> None:
    written_for = compat.WRITTEN_FOR[distribution]
    assert version(distribution) == written_for, (
        f"{distribution} {version(distribution)} is installed; live.compat's overrides of its "
        f"internals were written for {written_for}: check them against the new code "
        "(the other tests here say which assumption broke), then update WRITTEN_FOR"
    )


# --- redis ---------------------------------------------------------------------------


async def test_read_redis_connection_socket_stream() -> None:
    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"+pushed\r\n")
        await writer.drain()
        await reader.read()  # until the client closes
        writer.close()

    server = await asyncio.start_server(greet, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    # RESP2 and no CLIENT SETINFO: connecting sends nothing, so the greeting is the
    # first thing on the stream.
    connection = Connection(host="127.0.0.1", port=port, protocol=2, driver_info=None)
    try:
        with pytest.raises(RedisConnectionError):
            compat.connection_stream(connection)  # not connected yet
        await connection.connect_check_health(check_health=False)
        stream = compat.connection_stream(connection)
        async with asyncio.timeout(5):
            assert await stream.readexactly(9) == b"+pushed\r\n"
    finally:
        await connection.disconnect()
        server.close()
        await server.wait_closed()


# --- strawberry: private attributes -----------------------------------------------------


async def test_reach_graphql_info_and_schema_behind_strawberry() -> None:
    seen: list[GraphQLResolveInfo] = []

    @strawberry.type
    class Query:
        @strawberry.field
        def hello(self, info: strawberry.Info) -> str:
            seen.append(compat.graphql_info(info))
            return "hi"

    schema = strawberry.Schema(query=Query)
    assert isinstance(compat.graphql_schema(schema), GraphQLSchema)
    assert (await schema.execute("{ hello }")).data == {"hello": "hi"}
    [raw] = seen
    assert raw.field_name == "hello"
    assert raw.field_nodes[0].name.value == "hello"
    assert raw.schema is compat.graphql_schema(schema)


# --- strawberry: the extension runner ----------------------------------------------------


def test_match_strawberry_extension_runner_signatures() -> None:
    # What _LeanRunner and its stages override or call.
    factory = inspect.signature(strawberry.Schema.create_extensions_runner)
    assert list(factory.parameters) == ["self", "execution_context", "extensions"]
    assert list(inspect.signature(SchemaExtensionsRunner.__init__).parameters) == [
        "self",
        "execution_context",
        "extensions",
    ]
    assert callable(SchemaExtensionsRunner.operation)
    assert callable(SchemaExtensionsRunner.executing)
    assert list(inspect.signature(OperationContextManager.__init__).parameters) == [
        "self",
        "extensions",
    ]
    assert OperationContextManager.HOOK_NAME == "on_operation"
    assert ExecutingContextManager.HOOK_NAME == "on_execute"


async def test_drive_operation_hooks_through_lean_runner() -> None:
    stages: list[str] = []
    runners: list[SchemaExtensionsRunner] = []

    class Hooks(SchemaExtension):
        def on_operation(self) -> Iterator[None]:
            stages.append("operation")
            yield

        def on_execute(self) -> Iterator[None]:
            stages.append("execute")
            yield

    class Spied(compat.LeanHooksSchema):
        def create_extensions_runner(self, *args: Any, **kwargs: Any) -> SchemaExtensionsRunner:
            runner = super().create_extensions_runner(*args, **kwargs)
            runners.append(runner)
            return runner

    @strawberry.type
    class Query:
        @strawberry.field
        def hello(self) -> str:
            return "hi"

    schema = Spied(query=Query, extensions=[Hooks])
    assert (await schema.execute("{ hello }")).data == {"hello": "hi"}
    # strawberry asks the schema for its runner, and opens both stages through it.
    assert [type(r).__name__ for r in runners] == ["_LeanRunner"]
    assert stages == ["operation", "execute"]
    assert isinstance(runners[0].operation(), OperationContextManager)


# --- strawberry: the WebSocket handlers ---------------------------------------------------


def _parameters(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_match_strawberry_ws_handler_methods() -> None:
    transport = BaseGraphQLTransportWSHandler
    assert _parameters(transport.handle) == ["self"]
    assert _parameters(transport.handle_subscribe) == ["self", "message"]
    assert _parameters(transport.run_operation) == ["self", "operation"]
    assert _parameters(transport.send_message) == ["self", "message"]
    assert _parameters(transport.handle_message) == ["self", "message"]
    assert _parameters(transport.handle_invalid_message) == ["self", "error_message"]
    assert {"id", "query", "variables", "operation_name", "task"} <= set(Operation.__slots__)
    legacy = BaseGraphQLWSHandler
    assert _parameters(legacy.handle) == ["self"]
    assert _parameters(legacy.handle_start) == ["self", "message"]
    assert _parameters(legacy.send_message) == ["self", "message"]
    assert _parameters(legacy.handle_message) == ["self", "message"]
    assert _parameters(legacy.handle_async_results) == [
        "self",
        "operation_id",
        "query",
        "operation_name",
        "variables",
    ]


class _Socket:
    """strawberry's WebSocket adapter, as far as the handlers use it here."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def send_json(self, message: Any) -> None:
        self.sent.append(message)


class _Schema:
    """Records the root value each operation is started with; streams nothing."""

    def __init__(self) -> None:
        self.roots: list[Any] = []

    async def _nothing(self) -> AsyncGenerator[Any]:
        return
        yield

    async def stream(self, query: str, **kwargs: Any) -> AsyncGenerator[Any]:
        self.roots.append(kwargs["root_value"])
        await asyncio.sleep(0)  # another operation starts meanwhile
        return self._nothing()

    async def subscribe(self, query: str, **kwargs: Any) -> AsyncGenerator[Any]:
        return await self.stream(query, **kwargs)


class _Context:
    def __init__(self) -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "websocket.disconnect"}

        async def send(message: Any) -> None:
            return None

        self.request = WebSocket({"type": "websocket", "path": "/"}, receive, send)


async def test_give_each_transport_ws_operation_its_writer_as_root() -> None:
    schema = _Schema()
    handler = compat.TransportWSHandler(
        view=None,  # type: ignore[arg-type]
        websocket=_Socket(),  # type: ignore[arg-type]
        context=_Context(),  # type: ignore[arg-type]
        root_value=None,
        schema=schema,  # type: ignore[arg-type]
        connection_init_wait_timeout=timedelta(seconds=1),
    )
    operations = [Operation(handler, n, f"subscription {n} {{ x }}", None, n) for n in "ab"]
    for operation in operations:
        handler.operations[operation.id] = operation
    await asyncio.gather(*(handler.run_operation(op) for op in operations))
    assert [type(root) for root in schema.roots] == [SocketWriter, SocketWriter]
    assert [root.head for root in schema.roots] == [
        '{"id":"a","type":"next","payload":',
        '{"id":"b","type":"next","payload":',
    ]
    assert [root.operation_name for root in schema.roots] == ["a", "b"]


async def test_give_each_legacy_ws_operation_its_writer_as_root() -> None:
    schema = _Schema()
    handler = compat.LegacyWSHandler(
        view=None,  # type: ignore[arg-type]
        websocket=_Socket(),  # type: ignore[arg-type]
        context=_Context(),  # type: ignore[arg-type]
        root_value=None,
        schema=schema,  # type: ignore[arg-type]
        keep_alive=False,
        keep_alive_interval=None,
    )
    await asyncio.gather(
        *(handler.handle_async_results(n, f"subscription {n} {{ x }}", n, None) for n in "ab")
    )
    assert [root.head for root in schema.roots] == [
        '{"id":"a","type":"data","payload":',
        '{"id":"b","type":"data","payload":',
    ]


# --- uvicorn ------------------------------------------------------------------------------


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def write(self, data: Any) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


async def test_release_uvicorn_handshake_after_accept() -> None:
    protocols: list[WebSocketsSansIOProtocol] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        protocols.append(send.__self__)  # type: ignore[attr-defined]
        compat.release_handshake(send)
        await send({"type": "websocket.send", "text": "after the handshake"})
        await send({"type": "websocket.close", "code": 1000})

    config = Config(app=app, ws="websockets-sansio", proxy_headers=False, lifespan="off")
    config.load()
    protocol = WebSocketsSansIOProtocol(config=config, server_state=ServerState(), app_state={})
    transport = _Transport()
    protocol.connection_made(transport)
    protocol.data_received(
        b"GET / HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    async with asyncio.timeout(5):
        while not protocol.close_sent:
            await asyncio.sleep(0.01)
    protocol.connection_lost(None)
    # The ASGI send is the protocol's own bound method, and what it kept is released.
    assert protocols == [protocol]
    assert protocol.request is None and protocol.response is None
    assert transport.written.startswith(b"HTTP/1.1 101")
    assert b"after the handshake" in transport.written


def test_release_handshake_ignores_other_servers() -> None:
    async def send(message: Any) -> None:
        return None

    compat.release_handshake(send)  # no protocol behind it: nothing to release


# --- starlette ----------------------------------------------------------------------------


async def test_enter_app_as_starlette_does() -> None:
    seen: list[object] = []
    sent: list[Any] = []

    async def where(request: Request) -> PlainTextResponse:
        seen.append(request.app)
        return PlainTextResponse("ok")

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    app = Starlette(routes=[Route("/", where)])
    request_scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "root_path": "",
        "query_string": b"",
        "headers": [],
    }
    await app(request_scope, receive, send)
    assert sent[0]["status"] == 200
    scope: dict[str, Any] = {"type": "http"}
    compat.enter_app(scope, app)
    # Starlette's own entry and the bypass leave the same thing for request.app.
    assert seen == [app]
    assert Request(scope).app is app
