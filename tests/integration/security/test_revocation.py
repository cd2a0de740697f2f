"""A role or password change ends the user's open WebSockets, on every API process:
a socket opened before keeps neither the old role nor a session the password ended."""

from __future__ import annotations

import asyncio
import json

import pytest
from redis.asyncio import Redis
from websockets.exceptions import ConnectionClosed

from core.events import all_channel, device_channel
from core.settings import Settings
from tests.client import Api
from tests.contract import op
from tests.factories import PASSWORD, Session, admin_and_user, create_device, register
from tests.integration.api.test_websocket import LEGACY_WS, TRANSPORT_WS
from tests.integration.graph.test_subscriptions import Client, client, publish, reading_event
from tests.integration.live import wait_numsub
from tests.servers import serve_api

REVOKED_CODE = 4401


async def closed_code(ws: Client, *, device_id: str | None = None) -> int:
    """The close code once the server closes; no event (of `device_id`'s, when given: an
    ADMIN's feed also carries other test runs' readings, Redis pub/sub being server-wide)
    may arrive before it."""
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(10):
            while True:
                message = json.loads(await ws.ws.recv())
                if message["type"] not in {"next", "data"}:
                    continue
                reading = (message["payload"].get("data") or {}).get("readingAdded") or {}
                assert device_id is not None and reading.get("deviceId") != device_id, message
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code


async def subscribed(ws: Client, redis: Redis, device_id: str) -> None:
    await ws.subscribe("1", op("ReadingAdded"), {"deviceId": device_id})
    await wait_numsub(redis, device_channel("readings", device_id), 1)


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_close_websocket_password_changed_by_admin(
    api: Api, api_server: str, redis: Redis, protocol: str
) -> None:
    admin, user = await admin_and_user(api)
    device = await create_device(api, user)
    async with client(api_server, user, protocol) as ws:
        await subscribed(ws, redis, device.id)

        await api.execute(
            op("UpdateUser"), {"id": user.user_id, "password": "x" * 20}, token=admin.access_token
        )

        assert await closed_code(ws) == REVOKED_CODE


async def test_close_websocket_own_password_changed(
    api: Api, api_server: str, redis: Redis
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    async with client(api_server, user) as ws:
        await subscribed(ws, redis, device.id)

        changed = await api.execute(
            op("UpdateUser"),
            {"id": user.user_id, "password": "y" * 20, "currentPassword": PASSWORD},
            token=user.access_token,
        )

        assert changed.codes == []
        assert await closed_code(ws) == REVOKED_CODE


async def test_close_websocket_role_changed(api: Api, api_server: str, redis: Redis) -> None:
    admin, user = await admin_and_user(api)
    device = await create_device(api, user)
    async with client(api_server, user) as ws:
        await subscribed(ws, redis, device.id)

        await api.execute(
            op("UpdateUser"), {"id": user.user_id, "role": "ADMIN"}, token=admin.access_token
        )

        assert await closed_code(ws) == REVOKED_CODE


async def promoted(api: Api, admin: Session) -> Session:
    """A second ADMIN, logged in after its promotion."""
    other = await register(api)
    await api.execute(
        op("UpdateUser"), {"id": other.user_id, "role": "ADMIN"}, token=admin.access_token
    )
    login = await api.execute(op("Login"), {"email": other.email, "password": PASSWORD})
    payload = login.data["login"]
    return Session(other.user_id, other.email, "ADMIN", payload["accessToken"], "")


async def test_stop_admin_events_demoted_admin(api: Api, api_server: str, redis: Redis) -> None:
    admin, user = await admin_and_user(api)
    second = await promoted(api, admin)
    device = await create_device(api, user)
    async with client(api_server, second) as ws:
        # Every device's readings: an ADMIN's feed.
        await ws.subscribe("1", op("ReadingAdded"), {"deviceId": None})
        await wait_numsub(redis, all_channel("readings"), 1)

        demoted = await api.execute(
            op("UpdateUser"), {"id": second.user_id, "role": "USER"}, token=admin.access_token
        )
        assert demoted.data["updateUser"]["role"] == "USER"
        # Another user's reading, published once the demotion is done.
        await publish(redis, reading_event(device.id, user.user_id))

        assert await closed_code(ws, device_id=device.id) == REVOKED_CODE


async def test_close_websocket_on_other_api_process(
    api: Api, settings: Settings, redis: Redis
) -> None:
    admin, user = await admin_and_user(api)
    device = await create_device(api, user)
    # The socket is on a second API; the change is made through the session's one.
    async with serve_api(settings) as other, client(other, user) as ws:
        await subscribed(ws, redis, device.id)

        await api.execute(
            op("UpdateUser"), {"id": user.user_id, "role": "ADMIN"}, token=admin.access_token
        )

        assert await closed_code(ws) == REVOKED_CODE
