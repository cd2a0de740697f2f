"""commandUpdated over both WebSocket protocols: every state change, as it happens."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from core.events import device_channel, owner_channel
from ingest.worker import IngestWorker
from tests.brokers import ManagedBroker
from tests.client import Api
from tests.contract import op
from tests.factories import admin_and_user, create_device
from tests.integration.api.test_websocket import LEGACY_WS, TRANSPORT_WS
from tests.integration.device_commands.conftest import answer, online_device, received, send
from tests.integration.graph.test_subscriptions import client
from tests.integration.live import wait_numsub

PROTOCOLS = [TRANSPORT_WS, LEGACY_WS]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_command_updated_device_every_state_change(
    api: Api,
    api_server: str,
    redis: Redis,
    managed_broker: ManagedBroker,
    command_worker: IngestWorker,
    protocol: str,
) -> None:
    _, user = await admin_and_user(api)
    device = await create_device(api, user)
    async with client(api_server, user, protocol) as ws:
        await ws.subscribe("1", op("CommandUpdated"), {"deviceId": device.id})
        await wait_numsub(redis, device_channel("commands", device.id), 1)
        queued = await send(api, user, device.id, "reboot")
        assert (await ws.next_data())["commandUpdated"]["state"] == "QUEUED"
        async with online_device(managed_broker, device) as mqtt:
            sent = await ws.next_data()
            assert sent == {
                "commandUpdated": {
                    "id": queued["id"],
                    "deviceId": device.id,
                    "name": "reboot",
                    "state": "SENT",
                    "result": None,
                    "error": None,
                }
            }
            await received(mqtt, 1)
            await answer(mqtt, device.id, queued["id"], {"ok": True, "result": [1, "two"]})
            done = await ws.next_data()
            assert done["commandUpdated"]["state"] == "SUCCEEDED"
            assert done["commandUpdated"]["result"] == [1, "two"]
            # Failure and cancellation stream too.
            failing = await send(api, user, device.id, "explode")
            assert (await ws.next_data())["commandUpdated"]["state"] == "SENT"
            await received(mqtt, 1)
            await answer(mqtt, device.id, failing["id"], {"ok": False, "error": "no such"})
            failed = (await ws.next_data())["commandUpdated"]
            assert (failed["id"], failed["state"], failed["error"]) == (
                failing["id"],
                "FAILED",
                "no such",
            )


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_command_updated_null_every_own_device(
    api: Api, api_server: str, redis: Redis, protocol: str
) -> None:
    _, user = await admin_and_user(api)
    first = await create_device(api, user, "first")
    second = await create_device(api, user, "second")
    async with client(api_server, user, protocol) as ws:
        await ws.subscribe("1", op("CommandUpdated"), {"deviceId": None})
        await wait_numsub(redis, owner_channel("commands", user.user_id), 1)
        for device in (first, second):
            command = await send(api, user, device.id, timeoutSeconds=1)
            for state in ("QUEUED", "EXPIRED"):  # sent for later, then the sweep's
                update = (await ws.next_data())["commandUpdated"]
                assert (update["id"], update["deviceId"], update["state"]) == (
                    command["id"],
                    device.id,
                    state,
                )
