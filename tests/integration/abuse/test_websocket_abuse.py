"""WebSocket protocol abuse is answered with the protocols' close codes, and leaks nothing.

graphql-transport-ws closes with 4400 (invalid message), 4401 (operation before
connection_init), 4409 (subscriber id already in use) and 4429 (second
connection_init); the legacy graphql-ws protocol has fewer rules. Frames beyond the
server's size limit close with 1009. Subscriptions beyond the per-connection limit are
refused one by one; the connection and the subscriptions it holds carry on.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from core.events import device_channel
from core.settings import Settings
from tests.client import Api
from tests.factories import Session, create_device, register
from tests.integration.api.test_websocket import LEGACY_WS, TRANSPORT_WS, ws_url
from tests.integration.graph.test_subscriptions import publish, reading_event
from tests.integration.live import wait_numsub

READING_ADDED = (
    "subscription ($id: ID) { readingAdded(deviceId: $id) { deviceId values { value } } }"
)
# strawberry's default, as api/graphql.py configures it.
MAX_SUBSCRIPTIONS = 100
SUBSCRIBE_FLOOD = 2_000


async def close_code(ws: ClientConnection, timeout: float = 10) -> int:
    """The code the server closed with, reading (and dropping) whatever came before."""
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code


@asynccontextmanager
async def socket(api_server: str, protocol: str, **options: Any) -> AsyncIterator[ClientConnection]:
    async with connect(ws_url(api_server), subprotocols=[protocol], **options) as ws:  # type: ignore[list-item]
        yield ws


async def init(ws: ClientConnection, session: Session) -> None:
    payload = {"authorization": f"Bearer {session.access_token}"}
    await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
    assert json.loads(await ws.recv())["type"] == "connection_ack"


def subscribe(op_id: str, device_id: str, protocol: str = TRANSPORT_WS) -> str:
    kind = "subscribe" if protocol == TRANSPORT_WS else "start"
    payload = {"query": READING_ADDED, "variables": {"id": device_id}}
    return json.dumps({"id": op_id, "type": kind, "payload": payload})


async def active_subscriptions(api_server: str) -> float:
    async with httpx.AsyncClient(base_url=api_server) as http:
        text = (await http.get("/metrics")).text
    match = re.search(r"^graphql_subscriptions_active (\S+)$", text, re.MULTILINE)
    assert match, "graphql_subscriptions_active missing from /metrics"
    return float(match.group(1))


async def wait_active(api_server: str, expected: float) -> None:
    async with asyncio.timeout(10):
        while await active_subscriptions(api_server) != expected:
            await asyncio.sleep(0.05)


# ------------------------------------------------------------ before connection_init


async def test_refuse_start_before_connection_init_legacy_4401(api: Api, api_server: str) -> None:
    device = await create_device(api, await register(api))
    async with socket(api_server, LEGACY_WS) as ws:
        await ws.send(subscribe("1", device.id, LEGACY_WS))
        assert await close_code(ws) == 4401


MALFORMED = [
    "not json",
    "[1, 2]",
    "42",
    "null",
    '{"type": "nonsense"}',
    '{"type": 5}',
    '{"payload": {}}',
    '{"type": "subscribe", "id": "1"}',
    '{"type": "subscribe", "id": {"a": 1}, "payload": {"query": "{ me { id } }"}}',
    '{"type": "subscribe", "id": "1", "payload": "{ me { id } }"}',
    '{"type": "subscribe", "id": "1", "payload": {"query": 5}}',
    '{"type": "subscribe", "id": "1", "payload": {"query": "{ me { id } }", "variables": [1]}}',
    '{"type": "subscribe", "id": "1", "payload": {"query": "{ me { id } }", "operationName": 1}}',
    '{"type": "complete", "id": ["1"]}',
    '{"type": "connection_init", "payload": "token"}',
]


@pytest.mark.parametrize("message", MALFORMED)
async def test_close_invalid_message_graphql_transport_ws_4400(
    api: Api, api_server: str, message: str
) -> None:
    session = await register(api)
    async with socket(api_server, TRANSPORT_WS) as ws:
        await init(ws, session)
        await ws.send(message)
        assert await close_code(ws) == 4400


async def test_ignore_malformed_messages_legacy_connection_serves_on(
    api: Api, api_server: str, redis: Redis
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    async with socket(api_server, LEGACY_WS) as ws:
        await init(ws, session)
        for message in MALFORMED:
            if "connection_init" not in message:  # that one closes a legacy socket (1000)
                await ws.send(
                    message.replace('"subscribe"', '"start"').replace('"complete"', '"stop"')
                )
        await ws.send(subscribe("1", device.id, LEGACY_WS))
        await wait_numsub(redis, device_channel("readings", device.id), 1)
        await publish(redis, reading_event(device.id, session.user_id))
        async with asyncio.timeout(10):
            while (reply := json.loads(await ws.recv()))["type"] == "ka":
                pass
    assert (reply["type"], reply["id"]) == ("data", "1"), reply
    assert reply["payload"]["data"]["readingAdded"]["deviceId"] == device.id


async def test_close_binary_frame_graphql_transport_ws_4400(api: Api, api_server: str) -> None:
    session = await register(api)
    async with socket(api_server, TRANSPORT_WS) as ws:
        await init(ws, session)
        await ws.send(b'{"type": "ping"}')
        assert await close_code(ws) == 4400


async def test_close_second_connection_init_4429(api: Api, api_server: str) -> None:
    session = await register(api)
    async with socket(api_server, TRANSPORT_WS) as ws:
        await init(ws, session)
        payload = {"authorization": f"Bearer {session.access_token}"}
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        assert await close_code(ws) == 4429


# ------------------------------------------------------------ subscription ids


async def test_close_duplicate_subscription_id_4409_releases_both(
    api: Api, api_server: str, redis: Redis
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    channel = device_channel("readings", device.id)
    async with socket(api_server, TRANSPORT_WS) as ws:
        await init(ws, session)
        await ws.send(subscribe("same", device.id))
        await wait_numsub(redis, channel, 1)
        await ws.send(subscribe("same", device.id))
        assert await close_code(ws) == 4409
    # The first subscription ended with the connection: nothing is left subscribed.
    await wait_numsub(redis, channel, 0)
    await wait_active(api_server, 0)


async def next_data(ws: ClientConnection) -> dict[str, Any]:
    """The next operation message on a legacy socket, keep-alives skipped."""
    async with asyncio.timeout(10):
        while (message := json.loads(await ws.recv()))["type"] == "ka":
            pass
    return message  # type: ignore[no-any-return]


async def test_replace_duplicate_subscription_id_legacy_one_delivery(
    api: Api, api_server: str, redis: Redis
) -> None:
    # Legacy graphql-ws has no close code for it: the second "start" replaces the first.
    session = await register(api)
    device = await create_device(api, session)
    async with socket(api_server, LEGACY_WS) as ws:
        await init(ws, session)
        await ws.send(subscribe("same", device.id, LEGACY_WS))
        await wait_active(api_server, 1)
        await ws.send(subscribe("same", device.id, LEGACY_WS))
        # The first one is stopped (and says so), then the second one runs.
        assert await next_data(ws) == {"type": "complete", "id": "same"}
        # The replacement is live once an event comes through it.
        receiving = asyncio.create_task(next_data(ws))
        async with asyncio.timeout(10):
            while not receiving.done():
                await publish(redis, reading_event(device.id, session.user_id, 1.0))
                await asyncio.wait({receiving}, timeout=0.1)
        assert (receiving.result()["type"], receiving.result()["id"]) == ("data", "same")
        await wait_active(api_server, 1)
        await publish(redis, reading_event(device.id, session.user_id, 999.0))
        await ws.send(json.dumps({"id": "same", "type": "stop"}))
        last = []
        while (message := await next_data(ws))["type"] != "complete":
            last.append(message["payload"]["data"]["readingAdded"]["values"][0]["value"])
    assert last.count(999.0) == 1, last
    await wait_active(api_server, 0)


# ------------------------------------------------------------ floods and big frames


async def test_limit_subscriptions_legacy_refusal_rate_limited(api: Api, api_server: str) -> None:
    session = await register(api)
    device = await create_device(api, session)
    async with socket(api_server, LEGACY_WS) as ws:
        await init(ws, session)
        for n in range(MAX_SUBSCRIPTIONS):
            await ws.send(subscribe(str(n), device.id, LEGACY_WS))
        await wait_active(api_server, MAX_SUBSCRIPTIONS)
        await ws.send(subscribe("one-too-many", device.id, LEGACY_WS))
        refusal = await next_data(ws)
    assert refusal == {
        "type": "error",
        "id": "one-too-many",
        "payload": {
            "message": "Subscription limit reached",
            "extensions": {"code": "RATE_LIMITED"},
        },
    }


async def test_limit_subscription_flood_one_connection(
    api: Api, api_server: str, redis: Redis
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    channel = device_channel("readings", device.id)
    async with socket(api_server, TRANSPORT_WS, max_queue=None) as ws:
        await init(ws, session)
        for n in range(SUBSCRIBE_FLOOD):
            await ws.send(subscribe(str(n), device.id))
        refused: set[str] = set()
        async with asyncio.timeout(60):
            while len(refused) < SUBSCRIBE_FLOOD - MAX_SUBSCRIPTIONS:
                message = json.loads(await ws.recv())
                assert message["type"] == "error", message
                assert message["payload"][0]["message"] == "Subscription limit reached"
                assert message["payload"][0]["extensions"] == {"code": "RATE_LIMITED"}
                refused.add(message["id"])
        assert refused == {str(n) for n in range(MAX_SUBSCRIPTIONS, SUBSCRIBE_FLOOD)}
        await wait_active(api_server, MAX_SUBSCRIPTIONS)
        # One Redis subscription for them all, and the held ones still deliver.
        await wait_numsub(redis, channel, 1)
        await publish(redis, reading_event(device.id, session.user_id))
        delivered: set[str] = set()
        async with asyncio.timeout(30):
            while len(delivered) < MAX_SUBSCRIPTIONS:
                message = json.loads(await ws.recv())
                assert message["type"] == "next", message
                delivered.add(message["id"])
        assert delivered == {str(n) for n in range(MAX_SUBSCRIPTIONS)}
    await wait_numsub(redis, channel, 0)
    await wait_active(api_server, 0)


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_close_oversized_frame_1009(
    api: Api, api_server: str, settings: Settings, protocol: str
) -> None:
    session = await register(api)
    limit = settings.ws_max_message_bytes
    async with socket(api_server, protocol) as ws:
        await init(ws, session)
        query = "{ me { id } }" + " " * limit
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
        assert await close_code(ws, timeout=30) == 1009
    # The server is fine: the next connection is served.
    async with socket(api_server, protocol) as ws:
        await init(ws, session)
