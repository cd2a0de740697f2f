"""Cross-tenant attacks on commands: every operation, the live feed, and device results."""

from __future__ import annotations

import asyncio
import json

import pytest
from bson import ObjectId
from redis.asyncio import Redis

from core.events import owner_channel
from ingest.worker import IngestWorker
from models.commands import Command
from services.command_queue import command_event
from tests.brokers import ManagedBroker
from tests.client import Api
from tests.contract import op
from tests.factories import admin_and_user, create_device, register
from tests.integration.api.test_websocket import LEGACY_WS, TRANSPORT_WS
from tests.integration.device_commands.conftest import (
    answer,
    command_state,
    commands,
    eventually,
    online_device,
    received,
    send,
)
from tests.integration.firmware.helpers import as_device
from tests.integration.graph.test_subscriptions import client
from tests.integration.live import wait_numsub

PROTOCOLS = [TRANSPORT_WS, LEGACY_WS]


async def test_every_operation_on_foreign_device_or_command_not_found(api: Api) -> None:
    _, alice = await admin_and_user(api)
    mallory = await register(api)
    device = await create_device(api, alice)
    command = await send(api, alice, device.id)
    token = mallory.access_token

    attempt = await api.execute(
        op("SendCommand"), {"deviceId": device.id, "name": "reboot"}, token=token
    )
    assert attempt.code == "NOT_FOUND"
    listing = await api.execute(op("Commands"), {"deviceId": device.id}, token=token)
    assert listing.code == "NOT_FOUND"
    cancel = await api.execute(op("CancelCommand"), {"id": command["id"]}, token=token)
    assert cancel.code == "NOT_FOUND"
    # Same answer as for a command that does not exist at all.
    missing = await api.execute(op("CancelCommand"), {"id": "0" * 24}, token=token)
    assert (missing.code, missing.message) == (cancel.code, cancel.message)
    # Nothing changed for the owner.
    assert [c["state"] for c in await commands(api, alice, device.id)] == ["QUEUED"]
    assert len(await commands(api, alice, device.id)) == 1


async def test_admin_sends_and_cancels_on_any_device(api: Api) -> None:
    admin, user = await admin_and_user(api)
    device = await create_device(api, user)
    command = await send(api, admin, device.id)
    result = await api.execute(op("CancelCommand"), {"id": command["id"]}, token=admin.access_token)
    assert result.data["cancelCommand"]["state"] == "CANCELLED"
    assert [c["id"] for c in await commands(api, user, device.id)] == [command["id"]]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_command_updated_foreign_device_not_found(
    api: Api, api_server: str, protocol: str
) -> None:
    _, alice = await admin_and_user(api)
    mallory = await register(api)
    device = await create_device(api, alice)
    async with client(api_server, mallory, protocol) as ws:
        await ws.subscribe("1", op("CommandUpdated"), {"deviceId": device.id})
        kind, op_id, payload = await ws.receive()
    assert (kind, op_id) == ("error", "1")
    errors = payload if isinstance(payload, list) else [payload]
    assert [error["extensions"]["code"] for error in errors] == ["NOT_FOUND"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_command_updated_null_never_delivers_other_tenant(
    api: Api, api_server: str, redis: Redis, protocol: str
) -> None:
    _, alice = await admin_and_user(api)
    mallory = await register(api)
    alice_device = await create_device(api, alice)
    mallory_device = await create_device(api, mallory)
    async with client(api_server, mallory, protocol) as ws:
        await ws.subscribe("1", op("CommandUpdated"), {"deviceId": None})
        await wait_numsub(redis, owner_channel("commands", mallory.user_id), 1)
        foreign = await send(api, alice, alice_device.id)
        await api.execute(op("CancelCommand"), {"id": foreign["id"]}, token=alice.access_token)
        # Alice's event on Mallory's channel (a bug, or a forged publish): withheld per event.
        stored = await Command.get(ObjectId(foreign["id"]))
        assert stored is not None
        forged = command_event(stored).encode()
        await redis.publish(owner_channel("commands", mallory.user_id), forged)
        own = await send(api, mallory, mallory_device.id)
        await api.execute(op("CancelCommand"), {"id": own["id"]}, token=mallory.access_token)
        for state in ("QUEUED", "CANCELLED"):  # her own, and nothing of Alice's between
            data = await ws.next_data()
            assert data["commandUpdated"]["id"] == own["id"]
            assert data["commandUpdated"]["deviceId"] == mallory_device.id
            assert data["commandUpdated"]["state"] == state


async def test_device_cannot_publish_result_on_other_device_topic(
    api: Api, managed_broker: ManagedBroker, command_worker: IngestWorker
) -> None:
    user = await register(api)
    victim = await create_device(api, user)
    attacker = await create_device(api, await register(api))
    async with online_device(managed_broker, victim) as victim_client:
        command = await send(api, user, victim.id)
        await received(victim_client, 1)
        # The broker's ACL: the attacker may publish only under its own devices/{id}/.
        async with as_device(managed_broker, attacker) as mqtt:
            await answer(mqtt, victim.id, command["id"], {"ok": False, "error": "pwned"})
            # Its own topic, naming the victim's command: the worker's check.
            await answer(mqtt, attacker.id, command["id"], {"ok": False, "error": "pwned"})
        await eventually(
            lambda: asyncio.sleep(0, command_worker.stats.dropped_count("command_wrong_device")),
            lambda n: n == 1,
        )
        assert await command_state(api, user, victim.id, command["id"]) == "SENT"
        # The real device still answers.
        await answer(victim_client, victim.id, command["id"], {"ok": True, "result": 1})
        await eventually(
            lambda: command_state(api, user, victim.id, command["id"]),
            lambda s: s == "SUCCEEDED",
        )
    [node] = await commands(api, user, victim.id)
    assert (node["result"], node["error"]) == (1, None)


async def test_device_cannot_subscribe_other_device_commands(
    api: Api, managed_broker: ManagedBroker, command_worker: IngestWorker
) -> None:
    user = await register(api)
    victim = await create_device(api, user)
    attacker = await create_device(api, await register(api))
    async with as_device(managed_broker, attacker) as spy:
        await spy.subscribe(f"devices/{victim.id}/commands/#", qos=1)
        await spy.subscribe("devices/+/commands/#", qos=1)
        async with online_device(managed_broker, victim) as victim_client:
            command = await send(api, user, victim.id, params={"secret": "s3cr3t"})
            [got] = await received(victim_client, 1)
            assert got["id"] == command["id"]
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                async for message in spy.messages:
                    raise AssertionError(f"leaked {message.topic}: {message.payload!r}")


async def test_device_own_result_topic_allowed_by_acl(
    api: Api, managed_broker: ManagedBroker, command_worker: IngestWorker
) -> None:
    """The control for the test above: the same publish on the device's own topic lands."""
    user = await register(api)
    device = await create_device(api, user)
    async with online_device(managed_broker, device) as mqtt:
        command = await send(api, user, device.id)
        await received(mqtt, 1)
        await mqtt.publish(
            f"devices/{device.id}/commands/{command['id']}/result",
            json.dumps({"ok": True, "result": {"done": True}}),
            qos=1,
        )
        await eventually(
            lambda: command_state(api, user, device.id, command["id"]),
            lambda s: s == "SUCCEEDED",
        )
