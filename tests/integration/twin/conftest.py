"""Fixtures for twin tests: a worker on a real ingest identity (the broker's own ACLs
apply to twin/reported, twin/get and the worker's twin/desired answers), devices over
MQTT with their own credentials, and an observer that may read every twin topic."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiomqtt
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from core.dynsec import connect_dynsec
from core.settings import Settings
from ingest.worker import IngestWorker
from services.broker_identities import ingest_identities
from tests.brokers import ManagedBroker
from tests.client import Api
from tests.contract import op
from tests.factories import CreatedDevice, Session


def twin_worker_settings(settings: Settings, **changes: Any) -> Settings:
    """A worker on the last ingest identity the API provisions, its session ending with it."""
    identity = ingest_identities(settings)[-1]
    return settings.model_copy(
        update={
            "mqtt_username": identity.username,
            "mqtt_password": SecretStr(identity.password),
            "ingest_client_id": identity.client_id,
            # No share group: a group's messages also go to earlier tests' sessions.
            "ingest_share_group": "",
            "ingest_session_expiry_seconds": 0,
            "ingest_batch_delay_ms": 5,
            "ingest_device_cache_seconds": 0.5,
            **changes,
        }
    )


@asynccontextmanager
async def running_worker(settings: Settings, redis: Redis) -> AsyncIterator[IngestWorker]:
    worker = IngestWorker(settings, redis)
    task = asyncio.create_task(worker.run())
    connected = asyncio.create_task(worker.connected.wait())
    await asyncio.wait({task, connected}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
    try:
        if task.done():
            task.result()
        assert connected.done(), "the ingest worker did not connect within 15 s"
        yield worker
    finally:
        connected.cancel()
        task.cancel()
        await asyncio.gather(task, connected, return_exceptions=True)


@pytest.fixture
async def twin_worker(settings: Settings, redis: Redis) -> AsyncIterator[IngestWorker]:
    async with running_worker(twin_worker_settings(settings), redis) as worker:
        yield worker


@asynccontextmanager
async def device_client(
    broker: ManagedBroker, device: CreatedDevice
) -> AsyncIterator[aiomqtt.Client]:
    """Connected as the device itself (its id is its client id, as the broker demands)."""
    async with aiomqtt.Client(
        broker.host,
        broker.port,
        username=device.mqtt_username,
        password=device.mqtt_password,
        identifier=device.id,
        timeout=5,
    ) as client:
        yield client


@dataclass(frozen=True)
class Identity:
    username: str
    password: str


@pytest.fixture(scope="session")
async def observer_identity(managed_broker: ManagedBroker) -> Identity:
    """May subscribe to and receive every device's twin/desired (no device may)."""
    identity = Identity("test-twin-observer", secrets.token_urlsafe(16))
    topic = "devices/+/twin/desired"
    async with connect_dynsec(
        managed_broker.host,
        managed_broker.port,
        username=managed_broker.admin_username,
        password=managed_broker.admin_password,
    ) as dynsec:
        await dynsec.execute(
            {"command": "createRole", "rolename": identity.username},
            *[
                {
                    "command": "addRoleACL",
                    "rolename": identity.username,
                    "acltype": acltype,
                    "topic": topic,
                    "allow": True,
                }
                for acltype in ("subscribePattern", "publishClientReceive")
            ],
            {
                "command": "createClient",
                "username": identity.username,
                "password": identity.password,
                "roles": [{"rolename": identity.username}],
            },
        )
    return identity


@asynccontextmanager
async def observer(broker: ManagedBroker, identity: Identity) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(
        broker.host,
        broker.port,
        username=identity.username,
        password=identity.password,
        timeout=5,
    ) as client:
        yield client


async def next_message(client: aiomqtt.Client, timeout: float = 5.0) -> aiomqtt.Message:
    async with asyncio.timeout(timeout):
        return await anext(aiter(client.messages))


async def retained_desired(
    client: aiomqtt.Client, device_id: str, timeout: float = 1.0
) -> bytes | None:
    """The retained payload of the device's twin/desired, None when there is none."""
    topic = f"devices/{device_id}/twin/desired"
    await client.subscribe(topic, qos=1)
    try:
        message = await next_message(client, timeout)
    except TimeoutError:
        return None
    finally:
        await client.unsubscribe(topic)
    assert message.topic.value == topic and message.retain
    assert isinstance(message.payload, bytes)
    return message.payload


def desired_of(message: aiomqtt.Message) -> dict[str, Any]:
    assert isinstance(message.payload, bytes)
    document: dict[str, Any] = json.loads(message.payload)
    return document


async def twin(api: Api, session: Session, device_id: str) -> dict[str, Any]:
    result = await api.execute(op("DeviceTwin"), {"id": device_id}, token=session.access_token)
    value: dict[str, Any] = result.data["device"]["twin"]
    return value


async def update(
    api: Api,
    session: Session,
    device_id: str,
    patch: Any,
    expected_version: int | None = None,
) -> Any:
    return await api.execute(
        op("UpdateDesiredState"),
        {"deviceId": device_id, "patch": patch, "expectedVersion": expected_version},
        token=session.access_token,
    )


async def eventually(
    check: Callable[[], Awaitable[bool]], *, what: str, timeout: float = 10.0
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
