"""Dispatch: each command sent exactly once whoever races for it, in creation order, and
nothing queued lost when the event that should send it is missed or its API goes away."""

from __future__ import annotations

import asyncio
from collections import Counter

from bson import ObjectId
from redis.asyncio import Redis

from api.app import Api as ApiApp
from api.state import AppState
from core.broker import BrokerAdmin
from core.settings import Settings
from ingest.worker import IngestWorker
from models.commands import Command, CommandState
from models.devices import Device, DeviceStatus
from services.command_dispatch import CommandDispatcher
from tests.brokers import ManagedBroker
from tests.client import Api
from tests.factories import CreatedDevice, Session, create_device, register
from tests.integration.device_commands.conftest import (
    commands,
    nothing_received,
    online_device,
    received,
    send,
)
from tests.integration.firmware.conftest import ota_worker_settings
from tests.integration.firmware.helpers import as_device
from tests.integration.ingest.conftest import start_worker, stop_worker
from tests.net import free_port
from tests.servers import serve_api


def platform(api_app: ApiApp) -> AppState:
    state: AppState = api_app.state.platform
    return state


async def queue(api: Api, count: int) -> tuple[Session, CreatedDevice, list[str]]:
    """A user's device that never connected, with `count` QUEUED commands (their ids)."""
    user = await register(api)
    device = await create_device(api, user)
    ids = []
    for n in range(count):
        command = await send(api, user, device.id, "step", params={"n": n})
        assert command["state"] == "QUEUED"
        ids.append(command["id"])
    return user, device, ids


async def test_drain_racing_dispatchers_each_command_once_in_order(
    api: Api, api_app: ApiApp, settings: Settings, managed_broker: ManagedBroker
) -> None:
    state = platform(api_app)
    _, device, ids = await queue(api, 30)
    device_id = device.id
    racers = [CommandDispatcher(settings, state.broker, state.bus, state.redis) for _ in range(4)]
    async with as_device(managed_broker, device) as mqtt:
        await mqtt.subscribe(f"devices/{device_id}/commands/+", qos=1)
        counts = await asyncio.gather(*(r.drain(ObjectId(device_id)) for r in racers))
        got = await received(mqtt, 30)
        await nothing_received(mqtt, 1.0)
    assert sum(len(sent) for sent in counts) == 30
    assert [c["id"] for c in got] == ids  # once each, in creation order
    stored = await Command.find({"device_id": ObjectId(device_id)}).to_list()
    assert {c.state for c in stored} == {CommandState.SENT}


async def test_drain_without_redis_lease_still_exactly_once(
    api: Api, api_app: ApiApp, settings: Settings, managed_broker: ManagedBroker
) -> None:
    """The lease only orders; the MongoDB claims alone hand each command to one sender."""
    state = platform(api_app)
    _, device, ids = await queue(api, 30)
    device_id = device.id
    dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    racers = [CommandDispatcher(settings, state.broker, state.bus, dead) for _ in range(4)]
    try:
        async with as_device(managed_broker, device) as mqtt:
            await mqtt.subscribe(f"devices/{device_id}/commands/+", qos=1)
            counts = await asyncio.gather(*(r.drain(ObjectId(device_id)) for r in racers))
            got = await received(mqtt, 30)
            await nothing_received(mqtt, 1.0)
    finally:
        await dead.aclose()
    assert sum(len(sent) for sent in counts) == 30
    assert Counter(c["id"] for c in got) == Counter(ids)


async def test_drain_broker_unavailable_command_back_in_line(
    api: Api, api_app: ApiApp, settings: Settings
) -> None:
    state = platform(api_app)
    _, device, ids = await queue(api, 2)
    device_id = device.id
    nowhere = settings.model_copy(update={"mqtt_port": free_port()})
    async with BrokerAdmin(nowhere, startup_wait_seconds=0.1) as unreachable:
        dispatcher = CommandDispatcher(settings, unreachable, state.bus, state.redis)
        assert await dispatcher.drain(ObjectId(device_id)) == []
    stored = await Command.find({"device_id": ObjectId(device_id)}).sort("created_at").to_list()
    assert [(str(c.id), c.state, c.claim, c.sent_at) for c in stored] == [
        (ids[0], CommandState.QUEUED, None, None),
        (ids[1], CommandState.QUEUED, None, None),
    ]


async def test_sweep_sends_queued_commands_status_event_missed(
    api: Api, managed_broker: ManagedBroker
) -> None:
    """The device came ONLINE while no API heard it (no status event): the sweep sends."""
    user, device, ids = await queue(api, 3)
    device_id = device.id
    async with as_device(managed_broker, device) as mqtt:
        await mqtt.subscribe(f"devices/{device_id}/commands/+", qos=1)
        await Device.get_pymongo_collection().update_one(
            {"_id": ObjectId(device_id)}, {"$set": {"status": DeviceStatus.ONLINE.value}}
        )
        got = await received(mqtt, 3, timeout=10)
    assert [c["id"] for c in got] == ids
    assert {c["state"] for c in await commands(api, user, device_id)} == {"SENT"}


async def test_queued_commands_survive_their_api_stopping(
    api: Api, settings: Settings, managed_broker: ManagedBroker, command_worker: IngestWorker
) -> None:
    """Queued through a second API that then stops: the session API sends them on ONLINE."""
    user = await register(api)
    device = await create_device(api, user)
    async with serve_api(settings) as other_url, Api(other_url) as other:
        queued = [await send(other, user, device.id, "step", params={"n": n}) for n in range(3)]
    assert {c["state"] for c in queued} == {"QUEUED"}
    async with online_device(managed_broker, device, wait=False) as mqtt:
        got = await received(mqtt, 3)
    assert [c["id"] for c in got] == [c["id"] for c in queued]
    nodes = await commands(api, user, device.id)
    assert [(n["id"], n["state"]) for n in reversed(nodes)] == [(c["id"], "SENT") for c in queued]


async def test_queued_commands_survive_worker_restart(
    api: Api, settings: Settings, redis: Redis, managed_broker: ManagedBroker
) -> None:
    """Queued while the worker is down (stopped after a first run); the restarted worker
    brings the device ONLINE and the commands go out."""
    _, task = await start_worker(ota_worker_settings(settings), redis)
    await stop_worker(task)
    user = await register(api)
    device = await create_device(api, user)
    queued = [await send(api, user, device.id, "step") for _ in range(2)]
    _, task = await start_worker(ota_worker_settings(settings), redis)
    try:
        async with online_device(managed_broker, device) as mqtt:
            got = await received(mqtt, 2)
    finally:
        await stop_worker(task)
    assert [c["id"] for c in got] == [c["id"] for c in queued]
