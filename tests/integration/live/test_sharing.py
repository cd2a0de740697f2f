"""Live results executed once per event and selection, shared by the subscribers that
selected it (live.sharing), over real WebSockets fed through real Redis."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from contextlib import AsyncExitStack
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from api.app import Api as ApiApp
from core.events import ReadingEvent, device_channel, owner_channel
from live.sharing import SharedResults
from tests.client import Api
from tests.contract import op
from tests.factories import create_device
from tests.integration.api.test_websocket import LEGACY_WS, TRANSPORT_WS
from tests.integration.graph.test_subscriptions import (
    Client,
    client,
    expected_reading,
    publish,
    reading_event,
    tenants,
)
from tests.integration.live import wait_numsub

_probes = itertools.count(1_000_000)


@pytest.fixture
def shared(api_app: ApiApp) -> SharedResults:
    """The session API's shared results (its lifespan's LiveDelivery)."""
    results = api_app.state.platform.live.shared
    assert results is not None
    return results


WITH_VALUES = """
subscription Shared($deviceId: ID, $withValues: Boolean!) {
  readingAdded(deviceId: $deviceId) {
    deviceId
    values @include(if: $withValues) { metric value unit }
  }
}
"""


async def until_live(redis: Redis, clients: list[Client], device_id: str, owner_id: str) -> None:
    """Publish probe readings until every client has received one; drop the probes.

    The Redis channel count says nothing of a second local subscriber, so ask the
    subscribers themselves."""
    waiting = set(range(len(clients)))
    async with asyncio.timeout(10):
        while waiting:
            await publish(redis, reading_event(device_id, owner_id, float(next(_probes))))
            for index in list(waiting):
                try:
                    async with asyncio.timeout(0.2):
                        await clients[index].receive()
                    waiting.discard(index)
                except TimeoutError:
                    continue
    # Probes still in flight to the clients that answered first.
    for each in clients:
        while True:
            try:
                async with asyncio.timeout(0.2):
                    await each.receive()
            except TimeoutError:
                break


async def raw_message(ws: Client) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            message: dict[str, Any] = json.loads(await ws.ws.recv(decode=True))
            if message["type"] != "ka":
                return message


async def test_share_reading_added_same_selection_own_ids(
    api: Api, api_server: str, redis: Redis, shared: SharedResults
) -> None:
    _, user, _ = await tenants(api)
    device = await create_device(api, user)
    async with AsyncExitStack() as stack:
        transport = await stack.enter_async_context(client(api_server, user, TRANSPORT_WS))
        legacy = await stack.enter_async_context(client(api_server, user, LEGACY_WS))
        variables = {"deviceId": device.id}
        await transport.subscribe("a", op("ReadingAdded"), variables)
        await transport.subscribe("b", op("ReadingAdded"), variables)
        await legacy.subscribe("c", op("ReadingAdded"), variables)
        await wait_numsub(redis, device_channel("readings", device.id), 1)
        await until_live(redis, [transport, legacy], device.id, user.user_id)
        await until_live(redis, [transport, legacy], device.id, user.user_id)  # both of transport's
        before = shared.executions
        await publish(redis, reading_event(device.id, user.user_id, 31.5))
        first, second, third = (
            await raw_message(transport),
            await raw_message(transport),
            await raw_message(legacy),
        )
        # One execution for the three subscribers (and the event's three channels).
        assert shared.executions == before + 1
    payload = {"data": expected_reading(device.id, 31.5)}
    assert sorted([first["id"], second["id"]]) == ["a", "b"]
    assert {k: v for k, v in first.items() if k != "id"} == {"type": "next", "payload": payload}
    assert {k: v for k, v in second.items() if k != "id"} == {"type": "next", "payload": payload}
    assert third == {"id": "c", "type": "data", "payload": payload}


async def test_isolate_shared_reading_added_other_user(
    api: Api, api_server: str, redis: Redis
) -> None:
    _, a, b = await tenants(api)
    device_a, device_b = await create_device(api, a), await create_device(api, b)
    async with client(api_server, a) as ws_a, client(api_server, b) as ws_b:
        # The same document and variables: one shared plan for both users.
        await ws_a.subscribe("1", op("ReadingAdded"))
        await ws_b.subscribe("1", op("ReadingAdded"))
        await wait_numsub(redis, owner_channel("readings", a.user_id), 1)
        await wait_numsub(redis, owner_channel("readings", b.user_id), 1)
        await publish(redis, reading_event(device_a.id, a.user_id, 41.0))
        await publish(redis, reading_event(device_b.id, b.user_id, 42.0))
        assert await ws_a.next_data() == expected_reading(device_a.id, 41.0)
        # B's first message is its own reading: A's was never sent to it.
        assert await ws_b.next_data() == expected_reading(device_b.id, 42.0)


async def test_withhold_shared_reading_added_after_ownership_change(
    api: Api, api_server: str, redis: Redis
) -> None:
    _, a, b = await tenants(api)
    device_b = await create_device(api, b)
    async with client(api_server, a) as ws_a, client(api_server, b) as ws_b:
        await ws_a.subscribe("1", op("ReadingAdded"))
        await ws_b.subscribe("1", op("ReadingAdded"))
        await wait_numsub(redis, owner_channel("readings", a.user_id), 1)
        await wait_numsub(redis, owner_channel("readings", b.user_id), 1)
        # B's device's reading, misrouted to A's channel (the device changed hands).
        moved = reading_event(device_b.id, b.user_id, 43.0)
        await redis.publish(owner_channel("readings", a.user_id), moved.encode())
        await redis.publish(owner_channel("readings", b.user_id), moved.encode())
        assert await ws_b.next_data() == expected_reading(device_b.id, 43.0)
        with_probe = reading_event(device_b.id, a.user_id, 44.0)
        await redis.publish(owner_channel("readings", a.user_id), with_probe.encode())
        # A receives only the event that names it as owner.
        data = await ws_a.next_data()
        assert data["readingAdded"]["values"][0]["value"] == 44.0


async def test_share_reading_added_include_variable_per_value(
    api: Api, api_server: str, redis: Redis, shared: SharedResults
) -> None:
    _, user, _ = await tenants(api)
    device = await create_device(api, user)
    async with client(api_server, user) as full, client(api_server, user, LEGACY_WS) as bare:
        await full.subscribe("1", WITH_VALUES, {"deviceId": device.id, "withValues": True})
        await bare.subscribe("1", WITH_VALUES, {"deviceId": device.id, "withValues": False})
        await wait_numsub(redis, device_channel("readings", device.id), 1)
        await until_live(redis, [full, bare], device.id, user.user_id)
        before = shared.executions
        await publish(redis, reading_event(device.id, user.user_id, 51.0))
        assert await full.next_data() == {
            "readingAdded": {
                "deviceId": device.id,
                "values": [
                    {"metric": "temp", "value": 51.0, "unit": "C"},
                    {"metric": "hum", "value": 40.0, "unit": None},
                ],
            }
        }
        assert await bare.next_data() == {"readingAdded": {"deviceId": device.id}}
        assert shared.executions == before + 2  # one per value of $withValues


async def test_fall_back_reading_added_result_with_errors(
    api: Api, api_server: str, redis: Redis
) -> None:
    _, user, _ = await tenants(api)
    device = await create_device(api, user)
    async with client(api_server, user) as one, client(api_server, user, LEGACY_WS) as two:
        await one.subscribe("x", op("ReadingAdded"), {"deviceId": device.id})
        await two.subscribe("y", op("ReadingAdded"), {"deviceId": device.id})
        await wait_numsub(redis, device_channel("readings", device.id), 1)
        await until_live(redis, [one, two], device.id, user.user_id)
        # NaN is no GraphQL Float: the shared execution fails, strawberry answers each.
        # (The event's decoder takes "NaN" as a string; JSON has no NaN literal.)
        broken = orjson.loads(reading_event(device.id, user.user_id).encode())
        broken["v"] = [["temp", "NaN", "C"]]
        assert math.isnan(ReadingEvent.decode(orjson.dumps(broken)).values[0][1])
        await redis.publish(device_channel("readings", device.id), orjson.dumps(broken))
        await publish(redis, reading_event(device.id, user.user_id, 61.0))
        for ws, op_id in ((one, "x"), (two, "y")):
            kind, got_id, payload = await ws.receive()
            assert (kind, got_id) == ("next", op_id)
            assert payload["data"] is None
            # Coded by the ErrorCodes extension, as on strawberry's path.
            [error] = payload["errors"]
            assert error["extensions"]["code"] == "BAD_USER_INPUT"
            assert "Float cannot represent" in error["message"]
            assert await ws.next_data(op_id) == expected_reading(device.id, 61.0)
