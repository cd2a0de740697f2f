"""Fixtures for the ingest worker: broker identities, a worker, a device publisher."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiomqtt
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from core.dynsec import connect_dynsec
from core.settings import Settings
from ingest.worker import TOPICS, IngestWorker
from tests.brokers import ManagedBroker


@dataclass(frozen=True)
class Identity:
    username: str
    password: str


@dataclass(frozen=True)
class IngestIdentities:
    worker: Identity
    # May publish as any device: the broker's per-device ACLs are tested elsewhere.
    publisher: Identity


async def provision_identities(broker: ManagedBroker, prefix: str = "test") -> IngestIdentities:
    """A worker identity and an any-device publisher on `broker`, through dynsec.

    Named `<prefix>-ingest` and `<prefix>-publisher` (roles too): another suite on the
    same broker provisions its own under another prefix."""
    worker_role, publisher_role = f"{prefix}-ingest", f"{prefix}-publisher"
    worker = Identity(worker_role, secrets.token_urlsafe(16))
    publisher = Identity(publisher_role, secrets.token_urlsafe(16))
    subscribe = [
        {
            "command": "addRoleACL",
            "rolename": worker_role,
            "acltype": "subscribePattern",
            "topic": pattern,
            "allow": True,
        }
        for topic in TOPICS
        for pattern in (topic, f"$share/+/{topic}")
    ] + [
        # The broker sends a client only what its role may receive (docs/security.md).
        {
            "command": "addRoleACL",
            "rolename": worker_role,
            "acltype": "publishClientReceive",
            "topic": topic,
            "allow": True,
        }
        for topic in TOPICS
    ]
    async with connect_dynsec(
        broker.host,
        broker.port,
        username=broker.admin_username,
        password=broker.admin_password,
    ) as dynsec:
        await dynsec.execute(
            {"command": "createRole", "rolename": worker_role},
            *subscribe,
            {
                "command": "createClient",
                "username": worker.username,
                "password": worker.password,
                "roles": [{"rolename": worker_role}],
            },
            {"command": "createRole", "rolename": publisher_role},
            {
                "command": "addRoleACL",
                "rolename": publisher_role,
                "acltype": "publishClientSend",
                "topic": "devices/#",
                "allow": True,
            },
            {
                "command": "createClient",
                "username": publisher.username,
                "password": publisher.password,
                "roles": [{"rolename": publisher_role}],
            },
        )
    return IngestIdentities(worker=worker, publisher=publisher)


def publisher_on(broker: ManagedBroker, identities: IngestIdentities) -> aiomqtt.Client:
    """An MQTT client that may publish as any device on `broker` (not yet connected)."""
    return aiomqtt.Client(
        broker.host,
        broker.port,
        username=identities.publisher.username,
        password=identities.publisher.password,
    )


@pytest.fixture(scope="session")
async def ingest_identities(managed_broker: ManagedBroker) -> IngestIdentities:
    return await provision_identities(managed_broker)


def settings_for_worker(
    settings: Settings, broker: ManagedBroker, identities: IngestIdentities
) -> Settings:
    """Settings of a worker on `broker`, with a session and a share group of its own."""
    return settings.model_copy(
        update={
            "mqtt_host": broker.host,
            "mqtt_port": broker.port,
            "mqtt_username": identities.worker.username,
            "mqtt_password": SecretStr(identities.worker.password),
            "ingest_client_id": f"ingest-test-{uuid.uuid4().hex[:8]}",
            # A group of its own: the broker keeps queueing a share group's messages for
            # the persistent sessions of earlier tests' workers, which are gone.
            "ingest_share_group": f"test-{uuid.uuid4().hex[:8]}",
            "ingest_batch_delay_ms": 5,
            "ingest_status_flush_seconds": 0.2,
            "ingest_device_cache_seconds": 0.5,
        }
    )


@pytest.fixture
def worker_settings(
    settings: Settings, managed_broker: ManagedBroker, ingest_identities: IngestIdentities
) -> Settings:
    return settings_for_worker(settings, managed_broker, ingest_identities)


async def start_worker(settings: Settings, redis: Redis) -> tuple[IngestWorker, asyncio.Task[None]]:
    worker = IngestWorker(settings, redis)
    task = asyncio.create_task(worker.run())
    connected = asyncio.create_task(worker.connected.wait())
    await asyncio.wait({task, connected}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raises what stopped the worker
    if not connected.done():
        connected.cancel()
        await stop_worker(task)
        raise TimeoutError("the worker did not connect within 10 s")
    return worker, task


async def stop_worker(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def worker(worker_settings: Settings, redis: Redis) -> AsyncIterator[IngestWorker]:
    running, task = await start_worker(worker_settings, redis)
    try:
        yield running
    finally:
        await stop_worker(task)


@pytest.fixture
async def publisher(
    managed_broker: ManagedBroker, ingest_identities: IngestIdentities
) -> AsyncIterator[aiomqtt.Client]:
    async with publisher_on(managed_broker, ingest_identities) as client:
        yield client
