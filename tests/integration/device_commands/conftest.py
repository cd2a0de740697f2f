"""Fixtures for command tests: an ingest worker on an API-provisioned identity (so the
broker's real ACLs apply to command results), devices speaking MQTT, waiting helpers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiomqtt
import pytest
from bson import ObjectId
from redis.asyncio import Redis

from core.settings import Settings
from ingest.worker import IngestWorker
from models.devices import Device, DeviceStatus
from tests.brokers import ManagedBroker
from tests.client import Api
from tests.contract import op
from tests.factories import CreatedDevice, Session
from tests.integration.firmware.conftest import ota_worker_settings
from tests.integration.firmware.helpers import as_device
from tests.integration.ingest.conftest import start_worker, stop_worker


@pytest.fixture
async def command_worker(settings: Settings, redis: Redis) -> AsyncIterator[IngestWorker]:
    worker, task = await start_worker(ota_worker_settings(settings), redis)
    try:
        yield worker
    finally:
        await stop_worker(task)


async def eventually[T](
    probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], *, timeout: float = 15
) -> T:
    """Poll `probe` until `accept` holds; AssertionError with the last value at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s; last value: {value}")
        await asyncio.sleep(0.05)


async def device_status(device_id: str) -> DeviceStatus | None:
    device = await Device.get(ObjectId(device_id))
    return device.status if device else None


@asynccontextmanager
async def online_device(
    broker: ManagedBroker, device: CreatedDevice, *, wait: bool = True
) -> AsyncIterator[aiomqtt.Client]:
    """The device connected, subscribed to its commands, then announcing itself online
    (the order contract/devices.md asks for); with `wait`, until the platform says ONLINE."""
    async with as_device(broker, device) as client:
        await client.subscribe(f"devices/{device.id}/commands/+", qos=1)
        await client.publish(f"devices/{device.id}/status", b"online", qos=1)
        if wait:
            await eventually(lambda: device_status(device.id), lambda s: s == DeviceStatus.ONLINE)
        yield client


async def received(client: aiomqtt.Client, count: int, timeout: float = 10) -> list[dict[str, Any]]:
    """The next `count` commands the device is sent, decoded, each with its topic."""
    commands: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            commands.append({"topic": str(message.topic), **json.loads(message.payload)})
            if len(commands) == count:
                break
    return commands


async def nothing_received(client: aiomqtt.Client, seconds: float = 1.5) -> None:
    """No command arrives for `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            async for message in client.messages:
                raise AssertionError(f"unexpected command on {message.topic}")
    except TimeoutError:
        return


async def answer(client: aiomqtt.Client, device_id: str, command_id: str, body: Any) -> None:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    await client.publish(f"devices/{device_id}/commands/{command_id}/result", payload, qos=1)


async def send(
    api: Api, session: Session, device_id: str, name: str = "reboot", **variables: Any
) -> dict[str, Any]:
    """sendCommand (the contract's operation); the Command."""
    result = await api.execute(
        op("SendCommand"),
        {"deviceId": device_id, "name": name, **variables},
        token=session.access_token,
    )
    return result.data["sendCommand"]  # type: ignore[no-any-return]


async def commands(
    api: Api, session: Session, device_id: str, **variables: Any
) -> list[dict[str, Any]]:
    """commands(deviceId) (the contract's operation): the nodes, newest first."""
    result = await api.execute(
        op("Commands"), {"deviceId": device_id, **variables}, token=session.access_token
    )
    return [edge["node"] for edge in result.data["commands"]["edges"]]


async def command_state(api: Api, session: Session, device_id: str, command_id: str) -> str:
    nodes = await commands(api, session, device_id)
    return next(node["state"] for node in nodes if node["id"] == command_id)
