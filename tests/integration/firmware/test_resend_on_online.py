"""A device coming ONLINE is sent its desired twin and its in-flight OTA offer again
(services.device_resync): nothing it needs depends on the broker's retained store,
which a clustered RabbitMQ keeps per node. The retained copies are cleared here, as a
device reconnecting to another node would find them missing."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aiomqtt
from bson import ObjectId

from api.app import Api as ApiApp
from api.state import AppState
from core.events import StatusEvent
from ingest.worker import IngestWorker
from models.devices import DeviceStatus
from models.firmware import FirmwareUpdateTarget
from services.device_resync import StateResender
from tests.brokers import ManagedBroker
from tests.client import Api
from tests.contract import op
from tests.factories import CreatedDevice, Session, admin_and_user, create_device
from tests.integration.device_commands.conftest import device_status, eventually
from tests.integration.firmware.helpers import as_device, rollout_until, start, states, uploaded


def downlinks(device_id: str) -> list[tuple[str, int]]:
    return [(f"devices/{device_id}/twin/desired", 1), (f"devices/{device_id}/ota", 1)]


async def clear_retained(cleaner: aiomqtt.Client, device_id: str) -> None:
    """Empty retained messages: the broker forgets the device's desired document and offer."""
    for topic, _ in downlinks(device_id):
        await cleaner.publish(topic, b"", qos=1, retain=True)


async def messages(client: aiomqtt.Client, seconds: float) -> list[aiomqtt.Message]:
    """Every message the client receives within `seconds`."""
    got: list[aiomqtt.Message] = []
    try:
        async with asyncio.timeout(seconds):
            async for message in client.messages:
                got.append(message)
    except TimeoutError:
        pass
    return got


async def until_both(client: aiomqtt.Client, device_id: str) -> dict[str, Any]:
    """The first desired document and the first offer the device receives, by kind."""
    got: dict[str, Any] = {}
    async with asyncio.timeout(15):
        async for message in client.messages:
            assert not message.retain, "sent from the retained store: it was cleared"
            assert isinstance(message.payload, bytes) and message.payload
            kind = "ota" if message.topic.matches(f"devices/{device_id}/ota") else "desired"
            got.setdefault(kind, json.loads(message.payload))
            if len(got) == 2:
                return got
    raise AssertionError(f"only {got}")


@asynccontextmanager
async def connected(broker: ManagedBroker, device: CreatedDevice) -> AsyncIterator[aiomqtt.Client]:
    """The device connected and subscribed to its downlinks, nothing retained waiting for
    it, then announcing itself online (contract/devices.md's order) until ONLINE."""
    async with as_device(broker, device) as client:
        await client.subscribe(downlinks(device.id))
        assert await messages(client, 0.5) == []  # the retained copies are gone
        await client.publish(f"devices/{device.id}/status", b"online", qos=1)
        await eventually(lambda: device_status(device.id), lambda s: s == DeviceStatus.ONLINE)
        yield client


async def active_targets(device_id: str) -> int:
    return await FirmwareUpdateTarget.find(
        {"device_id": ObjectId(device_id), "active": True}
    ).count()


async def set_desired(api: Api, session: Session, device_id: str, patch: Any) -> int:
    result = await api.execute(
        op("UpdateDesiredState"),
        {"deviceId": device_id, "patch": patch, "expectedVersion": None},
        token=session.access_token,
    )
    version: int = result.data["updateDesiredState"]["version"]
    return version


async def dispatched(api: Api, admin: Session, device: CreatedDevice) -> str:
    """A rollout to `device` whose offer went out; the rollout's id."""
    firmware = await uploaded(api, admin, os.urandom(1000), version="2.0.0")
    update = await start(api, admin, firmware["id"], [device.id])
    await rollout_until(api, admin, update["id"], lambda u: states(u)[device.id] == "DISPATCHED")
    return str(update["id"])


async def test_device_online_retained_cleared_receives_desired_and_offer_each_connect(
    api: Api,
    managed_broker: ManagedBroker,
    ota_worker: IngestWorker,
    device_publisher: aiomqtt.Client,
) -> None:
    admin, _ = await admin_and_user(api)
    device = await create_device(api, admin)
    await set_desired(api, admin, device.id, {"interval": 5})
    version = await set_desired(api, admin, device.id, {"mode": "eco"})
    update_id = await dispatched(api, admin, device)
    await clear_retained(device_publisher, device.id)

    async with connected(managed_broker, device) as client:
        got = await until_both(client, device.id)
        assert got["desired"] == {"version": version, "desired": {"interval": 5, "mode": "eco"}}
        assert got["ota"]["updateId"] == update_id and got["ota"]["version"] == "2.0.0"
        await client.publish(f"devices/{device.id}/status", b"offline", qos=1)
        await eventually(lambda: device_status(device.id), lambda s: s == DeviceStatus.OFFLINE)

    # Every ONLINE sends them again, the same versions (the device ignores the repeat).
    await clear_retained(device_publisher, device.id)
    async with connected(managed_broker, device) as client:
        again = await until_both(client, device.id)
        assert again == got


async def test_device_online_nothing_pending_receives_nothing(
    api: Api,
    managed_broker: ManagedBroker,
    ota_worker: IngestWorker,
    device_publisher: aiomqtt.Client,
) -> None:
    """No desired state ever set, and a rollout cancelled before the device came: nothing
    is sent (a cancelled offer is not revived)."""
    admin, _ = await admin_and_user(api)
    device = await create_device(api, admin)
    update_id = await dispatched(api, admin, device)
    cancelled = await api.execute(
        op("CancelFirmwareUpdate"), {"id": update_id}, token=admin.access_token
    )
    assert cancelled.data["cancelFirmwareUpdate"]["state"] == "CANCELLED"
    # The dispatcher clears the cancelled offer (an empty retained message) and frees the
    # device: after that nothing is in flight for it.
    await eventually(lambda: active_targets(device.id), lambda n: n == 0)
    await clear_retained(device_publisher, device.id)
    async with connected(managed_broker, device) as client:
        assert await messages(client, 1.5) == []


async def test_online_event_heard_by_two_api_processes_resent_once(
    api: Api, api_app: ApiApp, managed_broker: ManagedBroker, device_publisher: aiomqtt.Client
) -> None:
    """Every API process hears the worker's status event; the first to claim it sends."""
    state: AppState = api_app.state.platform
    admin, _ = await admin_and_user(api)
    device = await create_device(api, admin)
    version = await set_desired(api, admin, device.id, {"interval": 5})
    await clear_retained(device_publisher, device.id)
    # No rollout targets the device: the offer publisher is never reached.
    processes = [
        StateResender(state.broker, NoOffers(), state.redis, firmware_base_url="") for _ in range(3)
    ]
    event = StatusEvent(device.id, admin.user_id, DeviceStatus.ONLINE.value, datetime.now(UTC))
    async with as_device(managed_broker, device) as client:
        await client.subscribe(downlinks(device.id))
        sent = await asyncio.gather(*(p.on_online(event) for p in processes))
        got = await messages(client, 1.5)
    assert sorted(sent) == [False, False, True]
    assert [json.loads(m.payload) for m in got if isinstance(m.payload, bytes)] == [
        {"version": version, "desired": {"interval": 5}}
    ]
    # A later ONLINE (another connection) is another event: sent again.
    later = StatusEvent(device.id, admin.user_id, DeviceStatus.ONLINE.value, datetime.now(UTC))
    assert await processes[1].on_online(later) is True
    assert await processes[1].resend(ObjectId(device.id)) == (True, False)


class NoOffers:
    async def offer(self, device_id: str, payload: bytes, *, retain: bool = True) -> None:
        raise AssertionError(f"no offer expected for {device_id}")


async def test_device_reconnecting_while_still_online_receives_desired_again(
    api: Api,
    managed_broker: ManagedBroker,
    ota_worker: IngestWorker,
    device_publisher: aiomqtt.Client,
) -> None:
    """A device the platform still has ONLINE connects again and announces `online` (its
    broker node died: no Last Will, so it never went OFFLINE): it is sent its desired
    document again, as on any ONLINE; repeating `online` at once sends nothing more."""
    admin, _ = await admin_and_user(api)
    device = await create_device(api, admin)
    version = await set_desired(api, admin, device.id, {"interval": 5})
    await clear_retained(device_publisher, device.id)
    expected = {"version": version, "desired": {"interval": 5}}
    async with connected(managed_broker, device) as first:
        got = [json.loads(m.payload) for m in await messages(first, 1.5) if m.payload]
        assert got == [expected]
    # The first session ended without a Last Will: the platform still says ONLINE.
    assert await device_status(device.id) == DeviceStatus.ONLINE
    await clear_retained(device_publisher, device.id)
    async with as_device(managed_broker, device) as again:
        await again.subscribe(downlinks(device.id))
        await again.publish(f"devices/{device.id}/status", b"online", qos=1)
        resent = [json.loads(m.payload) for m in await messages(again, 2.0) if m.payload]
        assert resent == [expected]
        await again.publish(f"devices/{device.id}/status", b"online", qos=1)
        assert await messages(again, 1.5) == []
