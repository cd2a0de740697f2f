"""Per-user quotas: a hostile user cannot grow devices, rotations, sockets or
subscriptions without bound; each refusal is RATE_LIMITED and others carry on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from core.settings import Settings
from models.devices import Device
from tests.client import Api
from tests.contract import op
from tests.factories import create_device, register
from tests.integration.api.test_websocket import LEGACY_WS, TRANSPORT_WS, ws_url
from tests.integration.graph.test_subscriptions import Client, client
from tests.servers import serve_api, with_settings


@pytest.fixture
async def limited(settings: Settings) -> AsyncIterator[str]:
    """An API whose quotas are low enough to reach in a test."""
    low = with_settings(
        settings,
        devices_per_user_max=2,
        credential_rotations_per_device_hour=2,
        credential_rotations_per_user_hour=3,
        websockets_per_user_max=2,
        subscriptions_per_user_max=3,
    )
    async with serve_api(low) as url:
        yield url


async def test_create_device_over_user_quota_rate_limited(limited: str) -> None:
    async with Api(limited) as api:
        owner, other = await register(api), await register(api)
        for _ in range(2):
            await create_device(api, owner)

        refused = await api.execute(
            op("CreateDevice"), {"name": "one too many", "type": "esp32"}, token=owner.access_token
        )

        assert refused.code == "RATE_LIMITED"
        assert await Device.find({"name": "one too many"}).count() == 0
        # The quota is per user: somebody else still creates devices.
        await create_device(api, other)


async def test_rotate_credentials_over_hourly_limit_rate_limited(limited: str) -> None:
    async with Api(limited) as api:
        owner = await register(api)
        first, second = await create_device(api, owner), await create_device(api, owner)
        rotate = op("RotateDeviceCredentials")
        token = owner.access_token

        per_device = [(await api.execute(rotate, {"id": first.id}, token=token)) for _ in range(3)]
        # Two on the first device, one on the second: the user's three for the hour.
        other_device = await api.execute(rotate, {"id": second.id}, token=token)
        over_user = await api.execute(rotate, {"id": second.id}, token=token)

    assert [r.codes for r in per_device] == [[], [], ["RATE_LIMITED"]]
    assert other_device.codes == []
    assert over_user.code == "RATE_LIMITED"


async def test_open_websocket_over_user_limit_refused(limited: str) -> None:
    async with Api(limited) as api:
        user, other = await register(api), await register(api)
    async with client(limited, user), client(limited, user, LEGACY_WS):
        # Third socket of the same user: graphql-transport-ws refuses at connection_init.
        async with connect(ws_url(limited), subprotocols=[TRANSPORT_WS]) as ws:  # type: ignore[list-item]
            init = {"authorization": f"Bearer {user.access_token}"}
            await ws.send(json.dumps({"type": "connection_init", "payload": init}))
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
        # graphql-ws says why.
        async with connect(ws_url(limited), subprotocols=[LEGACY_WS]) as ws:  # type: ignore[list-item]
            init = {"authorization": f"Bearer {user.access_token}"}
            await ws.send(json.dumps({"type": "connection_init", "payload": init}))
            answer = json.loads(await ws.recv())
            assert answer["type"] == "connection_error"
            assert answer["payload"]["code"] == "RATE_LIMITED"
        # Another user is not affected.
        async with client(limited, other):
            pass
    # Closed sockets no longer count.
    async with client(limited, user), client(limited, user):
        pass


async def test_subscribe_over_user_limit_rate_limited(limited: str) -> None:
    async with Api(limited) as api:
        user = await register(api)
        device = await create_device(api, user)
    variables = {"deviceId": device.id}
    async with client(limited, user) as one, client(limited, user, LEGACY_WS) as two:
        await one.subscribe("1", op("ReadingAdded"), variables)
        await one.subscribe("2", op("ReadingAdded"), variables)
        await two.subscribe("1", op("ReadingAdded"), variables)

        await two.subscribe("2", op("ReadingAdded"), variables)
        kind, op_id, payload = await two.receive()

        assert (kind, op_id) == ("error", "2")
        errors = payload if isinstance(payload, list) else [payload]
        assert errors[0]["extensions"]["code"] == "RATE_LIMITED"
        # Ending one frees its place (once its task is done: retried briefly).
        await one.stop("2")
        for attempt in range(100):
            if await accepted(one, f"again-{attempt}", variables):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the ended subscription's place was never freed")


async def accepted(ws: Client, op_id: str, variables: dict[str, Any]) -> bool:
    """Subscribe on a graphql-transport-ws client; whether no error came before a pong
    (a refusal is sent at once, before the ping that follows is answered)."""
    await ws.subscribe(op_id, op("ReadingAdded"), variables)
    await ws.ws.send(json.dumps({"type": "ping"}))
    async with asyncio.timeout(10):
        while True:
            message = json.loads(await ws.ws.recv())
            if message["type"] == "pong":
                return True
            if message["type"] == "error" and message.get("id") == op_id:
                return False
