"""Both WebSocket protocols are served, with the token checked at connection_init."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.client import Api
from tests.factories import Session, register

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"


def ws_url(api_server: str) -> str:
    return api_server.replace("http://", "ws://") + "/graphql"


async def receive(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await ws.recv(decode=True))
    return message


async def ask_me(ws: ClientConnection, session: Session) -> None:
    """connection_init with the session's token, then `{ me { email } }` as operation "1"."""
    await ws.send(
        json.dumps(
            {
                "type": "connection_init",
                "payload": {"authorization": f"Bearer {session.access_token}"},
            }
        )
    )
    assert (await receive(ws))["type"] == "connection_ack"
    await ws.send(
        json.dumps({"id": "1", "type": "subscribe", "payload": {"query": "{ me { email } }"}})
    )


async def test_run_query_over_graphql_transport_ws_authenticated(api: Api, api_server: str) -> None:
    session = await register(api)
    async with connect(ws_url(api_server), subprotocols=[TRANSPORT_WS]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == TRANSPORT_WS
        await ask_me(ws, session)
        message = await receive(ws)
        assert message == {
            "id": "1",
            "type": "next",
            "payload": {"data": {"me": {"email": session.email}}},
        }
        assert (await receive(ws)) == {"id": "1", "type": "complete"}


@pytest.mark.parametrize(
    "payload", [{}, {"authorization": "Bearer not-a-token"}, {"authorization": "Basic abc"}]
)
async def test_refuse_connection_init_graphql_transport_ws_bad_token(
    api_server: str, payload: dict[str, str]
) -> None:
    async with connect(ws_url(api_server), subprotocols=[TRANSPORT_WS]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        with pytest.raises(ConnectionClosed) as closed:
            await receive(ws)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4403


async def test_refuse_subscribe_before_connection_init_graphql_transport_ws(
    api_server: str,
) -> None:
    async with connect(ws_url(api_server), subprotocols=[TRANSPORT_WS]) as ws:  # type: ignore[list-item]
        await ws.send(
            json.dumps({"id": "1", "type": "subscribe", "payload": {"query": "{ me { id } }"}})
        )
        with pytest.raises(ConnectionClosed) as closed:
            await receive(ws)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401


async def test_accept_connection_init_legacy_graphql_ws_good_token(
    api: Api, api_server: str
) -> None:
    # Legacy graphql-ws carries subscriptions only; they arrive with the telemetry issue.
    session = await register(api)
    async with connect(ws_url(api_server), subprotocols=[LEGACY_WS]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == LEGACY_WS
        init = {"authorization": f"Bearer {session.access_token}"}
        await ws.send(json.dumps({"type": "connection_init", "payload": init}))
        assert (await receive(ws))["type"] == "connection_ack"


async def test_refuse_connection_init_legacy_graphql_ws_bad_token(api_server: str) -> None:
    async with connect(ws_url(api_server), subprotocols=[LEGACY_WS]) as ws:  # type: ignore[list-item]
        await ws.send(
            json.dumps(
                {"type": "connection_init", "payload": {"authorization": "Bearer expired.or.bad"}}
            )
        )
        error = await receive(ws)
        assert error["type"] == "connection_error"
        assert error["payload"]["code"] == "UNAUTHENTICATED"
        with pytest.raises(ConnectionClosed) as closed:
            await receive(ws)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1011
