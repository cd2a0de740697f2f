"""twinChanged over both WebSocket protocols, fed by the API and the real worker."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from core.twin_events import TwinEvent, twin_channel
from ingest.worker import IngestWorker
from tests.brokers import ManagedBroker
from tests.client import Api
from tests.contract import op
from tests.factories import admin_and_user, create_device, register
from tests.integration.graph.test_subscriptions import PROTOCOLS, client
from tests.integration.live import wait_numsub
from tests.integration.twin.conftest import device_client, update


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_twin_changed_pushes_both_sides_live(
    api: Api,
    api_server: str,
    redis: Redis,
    managed_broker: ManagedBroker,
    twin_worker: IngestWorker,
    protocol: str,
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    async with client(api_server, user, protocol) as ws:
        await ws.subscribe("1", op("TwinChanged"), {"deviceId": device.id})
        await wait_numsub(redis, twin_channel(device.id), 1)
        await update(api, user, device.id, {"interval": 5})
        assert await ws.next_data() == {
            "twinChanged": {
                "desired": {"interval": 5},
                "reported": {},
                "delta": {"interval": 5},
                "version": 1,
            }
        }
        async with device_client(managed_broker, device) as mqtt:
            report = {"interval": 5, "fw": "1.0"}
            await mqtt.publish(f"devices/{device.id}/twin/reported", json.dumps(report), qos=1)
            assert await ws.next_data() == {
                "twinChanged": {
                    "desired": {"interval": 5},
                    "reported": {"interval": 5, "fw": "1.0"},
                    "delta": {},
                    "version": 1,
                }
            }
        await update(api, user, device.id, {"interval": None})
        changed = (await ws.next_data())["twinChanged"]
        assert (changed["desired"], changed["version"]) == ({}, 2)
        await ws.stop("1")
    await wait_numsub(redis, twin_channel(device.id), 0)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_twin_changed_late_and_foreign_events_withheld(
    api: Api, api_server: str, redis: Redis, protocol: str
) -> None:
    other, user = await admin_and_user(api)  # a USER watches (an ADMIN would see all)
    device = await create_device(api, user)
    at = datetime(2026, 1, 1, tzinfo=UTC)

    def event(revision: int, owner_id: str, marker: str) -> bytes:
        return TwinEvent(
            device.id, owner_id, {"m": marker}, {}, revision, revision, at, None
        ).encode()

    async with client(api_server, user, protocol) as ws:
        await ws.subscribe("1", op("TwinChanged"), {"deviceId": device.id})
        channel = twin_channel(device.id)
        await wait_numsub(redis, channel, 1)
        await redis.publish(channel, event(5, user.user_id, "five"))
        await redis.publish(channel, event(4, user.user_id, "late"))  # older: skipped
        await redis.publish(channel, event(6, other.user_id, "foreign"))  # not the owner's
        await redis.publish(channel, event(7, user.user_id, "seven"))
        shown = [(await ws.next_data())["twinChanged"]["desired"]["m"] for _ in range(2)]
    assert shown == ["five", "seven"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_refuse_twin_changed_foreign_device_not_found(
    api: Api, api_server: str, protocol: str
) -> None:
    owner, intruder = await register(api), await register(api)
    device = await create_device(api, owner)
    async with client(api_server, intruder, protocol) as ws:
        await ws.subscribe("1", op("TwinChanged"), {"deviceId": device.id})
        kind, op_id, payload = await ws.receive()
    assert (kind, op_id) == ("error", "1")
    errors = payload if isinstance(payload, list) else [payload]
    assert [error["extensions"]["code"] for error in errors] == ["NOT_FOUND"]
