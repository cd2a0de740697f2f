"""WebSockets on /graphql go straight to the GraphQL app; the rest of the stack's duties
(request ids, other paths refused) still hold."""

from __future__ import annotations

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from tests.client import Api
from tests.factories import register
from tests.integration.api.test_websocket import TRANSPORT_WS, ask_me, receive, ws_url


async def test_accept_websocket_graphql_with_request_id(api: Api, api_server: str) -> None:
    session = await register(api)
    async with connect(
        ws_url(api_server),
        subprotocols=[Subprotocol(TRANSPORT_WS)],
        additional_headers={"X-Request-ID": "ws-req-7"},
    ) as ws:
        assert ws.response is not None
        assert ws.response.headers["x-request-id"] == "ws-req-7"
        # The handshake is let go of once accepted; the connection goes on as before.
        await ask_me(ws, session)
        assert (await receive(ws))["payload"] == {"data": {"me": {"email": session.email}}}


async def test_accept_websocket_graphql_generates_request_id(api_server: str) -> None:
    async with connect(ws_url(api_server), subprotocols=[Subprotocol(TRANSPORT_WS)]) as ws:
        assert ws.response is not None
        assert len(ws.response.headers["x-request-id"]) >= 16


@pytest.mark.parametrize("path", ["/nowhere", "/graphql/", "/health"])
async def test_refuse_websocket_other_path(api_server: str, path: str) -> None:
    url = api_server.replace("http://", "ws://") + path
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, subprotocols=[Subprotocol(TRANSPORT_WS)]):
            pass
    assert refused.value.response.status_code == 403
