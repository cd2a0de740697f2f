"""ReadingAdded and DeviceStatusChanged over real WebSockets, fed through real Redis."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from core.events import ReadingEvent, StatusEvent, channels_for, device_channel, owner_channel
from core.settings import Settings
from tests.client import Api
from tests.contract import op
from tests.factories import Session, admin_and_user, create_device, register
from tests.integration.api.test_websocket import LEGACY_WS, TRANSPORT_WS, ws_url
from tests.integration.live import wait_numsub

PROTOCOLS = [TRANSPORT_WS, LEGACY_WS]
AT = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)


class Client:
    """One GraphQL WebSocket, either protocol, messages normalised to next/error/complete."""

    def __init__(self, ws: ClientConnection, protocol: str) -> None:
        self.ws = ws
        self.protocol = protocol

    async def subscribe(
        self, op_id: str, query: str, variables: dict[str, Any] | None = None
    ) -> None:
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        payload = {"query": query, "variables": variables or {}}
        await self.ws.send(json.dumps({"id": op_id, "type": kind, "payload": payload}))

    async def stop(self, op_id: str) -> None:
        kind = "complete" if self.protocol == TRANSPORT_WS else "stop"
        await self.ws.send(json.dumps({"id": op_id, "type": kind}))

    async def receive(self) -> tuple[str, str, Any]:
        """(type, id, payload) of the next operation message; keep-alives skipped."""
        async with asyncio.timeout(10):
            while True:
                message = json.loads(await self.ws.recv(decode=True))
                kind = {"data": "next"}.get(message["type"], message["type"])
                if kind in {"next", "error", "complete"}:
                    return kind, message.get("id", ""), message.get("payload")

    async def next_data(self, op_id: str = "1") -> dict[str, Any]:
        kind, got_id, payload = await self.receive()
        assert (kind, got_id) == ("next", op_id), payload
        assert "errors" not in payload, payload
        data: dict[str, Any] = payload["data"]
        return data


@asynccontextmanager
async def client(
    api_server: str, session: Session, protocol: str = TRANSPORT_WS, **options: Any
) -> AsyncIterator[Client]:
    async with connect(ws_url(api_server), subprotocols=[protocol], **options) as ws:  # type: ignore[list-item]
        init = {"authorization": f"Bearer {session.access_token}"}
        await ws.send(json.dumps({"type": "connection_init", "payload": init}))
        assert json.loads(await ws.recv(decode=True))["type"] == "connection_ack"
        yield Client(ws, protocol)


def reading_event(device_id: str, owner_id: str, value: float = 21.5) -> ReadingEvent:
    return ReadingEvent(
        device_id=device_id,
        owner_id=owner_id,
        timestamp=AT,
        anomaly=value > 100,
        values=(("temp", value, "C"), ("hum", 40.0, None)),
    )


async def publish(redis: Redis, event: ReadingEvent | StatusEvent) -> None:
    """As the ingest worker does: the same payload on the event's three channels."""
    kind = "readings" if isinstance(event, ReadingEvent) else "status"
    for channel in channels_for(kind, event.device_id, event.owner_id):
        await redis.publish(channel, event.encode())


def expected_reading(device_id: str, value: float = 21.5) -> dict[str, Any]:
    return {
        "readingAdded": {
            "deviceId": device_id,
            "timestamp": "2025-06-01T12:00:00+00:00",
            "anomaly": value > 100,
            "values": [
                {"metric": "temp", "value": value, "unit": "C"},
                {"metric": "hum", "value": 40.0, "unit": None},
            ],
        }
    }


async def tenants(api: Api) -> tuple[Session, Session, Session]:
    admin, a = await admin_and_user(api)
    b = await register(api)
    return admin, a, b


# ---------------------------------------------------------------- readingAdded


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_receive_reading_added_device_contract_fields(
    api: Api, api_server: str, redis: Redis, protocol: str
) -> None:
    _, user, _ = await tenants(api)
    device = await create_device(api, user)
    async with client(api_server, user, protocol) as ws:
        await ws.subscribe("1", op("ReadingAdded"), {"deviceId": device.id})
        await wait_numsub(redis, device_channel("readings", device.id), 1)
        await publish(redis, reading_event(device.id, user.user_id))
        await publish(redis, reading_event(device.id, user.user_id, 150.0))
        assert await ws.next_data() == expected_reading(device.id)
        assert await ws.next_data() == expected_reading(device.id, 150.0)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_receive_reading_added_null_every_own_device(
    api: Api, api_server: str, redis: Redis, protocol: str
) -> None:
    _, user, _ = await tenants(api)
    first, second = await create_device(api, user), await create_device(api, user)
    async with client(api_server, user, protocol) as ws:
        await ws.subscribe("1", op("ReadingAdded"), {"deviceId": None})
        await wait_numsub(redis, owner_channel("readings", user.user_id), 1)
        await publish(redis, reading_event(first.id, user.user_id))
        await publish(redis, reading_event(second.id, user.user_id))
        assert await ws.next_data() == expected_reading(first.id)
        assert await ws.next_data() == expected_reading(second.id)


async def test_receive_reading_added_admin_null_everyone(
    api: Api, api_server: str, redis: Redis
) -> None:
    admin, a, b = await tenants(api)
    probe = await create_device(api, admin)
    device_a, device_b = await create_device(api, a), await create_device(api, b)
    async with client(api_server, admin) as ws:
        await ws.subscribe("1", op("ReadingAdded"))
        # readings:all may have other subscribers: probe until this one is live.
        async with asyncio.timeout(10):
            while True:
                await publish(redis, reading_event(probe.id, admin.user_id))
                try:
                    async with asyncio.timeout(0.2):
                        await ws.next_data()
                    break
                except TimeoutError:
                    continue
        await publish(redis, reading_event(device_a.id, a.user_id))
        await publish(redis, reading_event(device_b.id, b.user_id))
        received = []
        # Only these two: late probes, and (Redis pub/sub being server-wide) whatever
        # else publishes on readings:all of the same Redis, e.g. a benchmark.
        while len(received) < 2:
            data = await ws.next_data()
            if data["readingAdded"]["deviceId"] in (device_a.id, device_b.id):
                received.append(data)
        assert received == [expected_reading(device_a.id), expected_reading(device_b.id)]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_refuse_reading_added_foreign_device_not_found(
    api: Api, api_server: str, protocol: str
) -> None:
    _, a, b = await tenants(api)
    device_a = await create_device(api, a)
    async with client(api_server, b, protocol) as ws:
        await ws.subscribe("1", op("ReadingAdded"), {"deviceId": device_a.id})
        kind, op_id, payload = await ws.receive()
    assert (kind, op_id) == ("error", "1")
    errors = payload if isinstance(payload, list) else [payload]
    assert [error["extensions"]["code"] for error in errors] == ["NOT_FOUND"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_isolate_reading_added_null_cross_tenant(
    api: Api, api_server: str, redis: Redis, protocol: str
) -> None:
    _, a, b = await tenants(api)
    device_a, device_b = await create_device(api, a), await create_device(api, b)
    async with client(api_server, b, protocol) as ws:
        await ws.subscribe("1", op("ReadingAdded"))
        await wait_numsub(redis, owner_channel("readings", b.user_id), 1)
        await publish(redis, reading_event(device_a.id, a.user_id, 1.0))
        await publish(redis, reading_event(device_b.id, b.user_id, 2.0))
        # Published after A's: had A's been delivered it would have come first.
        assert await ws.next_data() == expected_reading(device_b.id, 2.0)


@pytest.mark.parametrize("null_device", [False, True])
async def test_withhold_reading_added_event_owner_mismatch(
    api: Api, api_server: str, redis: Redis, null_device: bool
) -> None:
    _, a, b = await tenants(api)
    device_b = await create_device(api, b)
    async with client(api_server, b) as ws:
        if null_device:
            channel = owner_channel("readings", b.user_id)
            await ws.subscribe("1", op("ReadingAdded"))
        else:
            channel = device_channel("readings", device_b.id)
            await ws.subscribe("1", op("ReadingAdded"), {"deviceId": device_b.id})
        await wait_numsub(redis, channel, 1)
        # On B's own channel, but naming another owner (a stale or misrouted event).
        forged = reading_event(device_b.id, a.user_id, 1.0)
        await redis.publish(channel, forged.encode())
        await redis.publish(channel, b"not json")
        await redis.publish(channel, reading_event(device_b.id, b.user_id, 2.0).encode())
        assert await ws.next_data() == expected_reading(device_b.id, 2.0)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_release_redis_subscription_on_socket_close(
    api: Api, api_server: str, redis: Redis, protocol: str
) -> None:
    _, user, _ = await tenants(api)
    device = await create_device(api, user)
    channel = device_channel("readings", device.id)
    async with client(api_server, user, protocol) as ws:
        await ws.subscribe("1", op("ReadingAdded"), {"deviceId": device.id})
        await ws.subscribe("2", op("ReadingAdded"), {"deviceId": device.id})
        await wait_numsub(redis, channel, 1)
    await wait_numsub(redis, channel, 0)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_release_redis_subscription_on_complete(
    api: Api, api_server: str, redis: Redis, protocol: str
) -> None:
    _, user, _ = await tenants(api)
    device = await create_device(api, user)
    channel = device_channel("readings", device.id)
    async with client(api_server, user, protocol) as ws:
        await ws.subscribe("1", op("ReadingAdded"), {"deviceId": device.id})
        await wait_numsub(redis, channel, 1)
        await ws.stop("1")
        await wait_numsub(redis, channel, 0)
        # The connection stays usable.
        await ws.subscribe("2", op("ReadingAdded"), {"deviceId": device.id})
        await wait_numsub(redis, channel, 1)
        await publish(redis, reading_event(device.id, user.user_id))
        kind, op_id, payload = await ws.receive()
        if protocol == LEGACY_WS and kind == "complete":  # graphql-ws confirms the stop
            kind, op_id, payload = await ws.receive()
        assert (kind, op_id, payload) == ("next", "2", {"data": expected_reading(device.id)})


async def test_close_slow_subscriber_1013(api: Api, api_server: str, redis: Redis) -> None:
    _, user, _ = await tenants(api)
    device = await create_device(api, user)
    channel = device_channel("readings", device.id)
    # A client that stops reading: tiny kernel buffer, and websockets stops reading
    # from the socket once a few frames are queued.
    address = urlsplit(api_server)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((address.hostname, address.port))
    async with client(api_server, user, sock=sock, max_queue=1) as ws:
        await ws.subscribe("1", op("ReadingAdded"), {"deviceId": device.id})
        await wait_numsub(redis, channel, 1)
        payload = reading_event(device.id, user.user_id).encode()
        published = 0
        # Publish until the server gives up on this subscriber: its Redis channel goes.
        async with asyncio.timeout(60):
            while (await redis.pubsub_numsub(channel))[0][1] > 0:
                async with redis.pipeline(transaction=False) as pipe:
                    for _ in range(500):
                        pipe.publish(channel, payload)
                    await pipe.execute()
                published += 500
        # Read what was in flight; then the close frame.
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await ws.ws.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1013, "subscriber too slow")


# ---------------------------------------------------------------- deviceStatusChanged


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_receive_device_status_changed_own_devices_only(
    api: Api, api_server: str, redis: Redis, protocol: str
) -> None:
    _, a, b = await tenants(api)
    device_a, device_b = await create_device(api, a), await create_device(api, b)
    async with client(api_server, b, protocol) as ws:
        await ws.subscribe("1", op("DeviceStatusChanged"))
        await wait_numsub(redis, owner_channel("status", b.user_id), 1)
        await publish(redis, StatusEvent(device_a.id, a.user_id, "ONLINE", AT))
        await redis.publish(
            owner_channel("status", b.user_id),
            StatusEvent(device_a.id, a.user_id, "ONLINE", AT).encode(),
        )
        await publish(redis, StatusEvent(device_b.id, b.user_id, "OFFLINE", AT))
        await publish(redis, StatusEvent(device_b.id, b.user_id, "ONLINE", None))
        assert await ws.next_data() == {
            "deviceStatusChanged": {
                "id": device_b.id,
                "status": "OFFLINE",
                "lastSeen": "2025-06-01T12:00:00+00:00",
            }
        }
        assert await ws.next_data() == {
            "deviceStatusChanged": {"id": device_b.id, "status": "ONLINE", "lastSeen": None}
        }


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_device_status_changed_skips_reconnect_announced_while_online(
    api: Api, api_server: str, redis: Redis, protocol: str
) -> None:
    """A device already ONLINE announcing `online` again (a reconnect the platform did
    not see) is an event for the API's re-send, not a status change for subscribers."""
    _, a, _ = await tenants(api)
    device = await create_device(api, a)
    async with client(api_server, a, protocol) as ws:
        await ws.subscribe("1", op("DeviceStatusChanged"))
        await wait_numsub(redis, owner_channel("status", a.user_id), 1)
        await publish(redis, StatusEvent(device.id, a.user_id, "ONLINE", AT, reconnected=True))
        await publish(redis, StatusEvent(device.id, a.user_id, "OFFLINE", AT))
        assert await ws.next_data() == {
            "deviceStatusChanged": {
                "id": device.id,
                "status": "OFFLINE",
                "lastSeen": "2025-06-01T12:00:00+00:00",
            }
        }


# ---------------------------------------------------------------- token lifetime


def short_lived_token(settings: Settings, user_id: str, seconds: int) -> str:
    now = int(time.time())
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": user_id,
        "iat": now,
        "exp": now + seconds,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")


async def test_close_subscription_when_token_expires_4401(
    api: Api, api_server: str, redis: Redis, settings: Settings
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    brief = replace(session, access_token=short_lived_token(settings, session.user_id, 2))
    async with client(api_server, brief, TRANSPORT_WS) as subscriber:
        await subscriber.subscribe("1", op("ReadingAdded"), {"deviceId": device.id})
        await wait_numsub(redis, device_channel("readings", device.id), 1)
        await publish(redis, reading_event(device.id, session.user_id))
        assert await subscriber.next_data("1") == expected_reading(device.id)
        await asyncio.sleep(2.5)
        await publish(redis, reading_event(device.id, session.user_id, value=22.0))
        with pytest.raises(ConnectionClosed) as closed:
            await subscriber.receive()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401
