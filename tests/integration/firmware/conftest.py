"""Fixtures for firmware tests: clean GridFS, an ingest worker on the real ingest identity,
and a test identity that may publish as any device (to clean up retained messages)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import aiomqtt
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from core.dynsec import connect_dynsec
from core.settings import Settings
from firmware import storage
from ingest.worker import IngestWorker
from services.broker_identities import ingest_identities
from tests.brokers import ManagedBroker
from tests.integration.firmware.helpers import Identity


@pytest.fixture(autouse=True)
async def clean_gridfs(clean_state: None) -> None:
    """GridFS collections are not Beanie documents: emptied here, before each test."""
    db = storage.database()
    await db[f"{storage.BUCKET}.files"].delete_many({})
    await db[f"{storage.BUCKET}.chunks"].delete_many({})


@pytest.fixture(scope="session")
async def device_publisher_identity(managed_broker: ManagedBroker) -> Identity:
    """A broker identity that may publish on any device topic (test clean-up only)."""
    identity = Identity("test-ota-publisher", secrets.token_urlsafe(16))
    async with connect_dynsec(
        managed_broker.host,
        managed_broker.port,
        username=managed_broker.admin_username,
        password=managed_broker.admin_password,
    ) as dynsec:
        await dynsec.execute(
            {"command": "createRole", "rolename": identity.username},
            {
                "command": "addRoleACL",
                "rolename": identity.username,
                "acltype": "publishClientSend",
                "topic": "devices/#",
                "allow": True,
            },
            {
                "command": "createClient",
                "username": identity.username,
                "password": identity.password,
                "roles": [{"rolename": identity.username}],
            },
        )
    return identity


@pytest.fixture
async def device_publisher(
    managed_broker: ManagedBroker, device_publisher_identity: Identity
) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(
        managed_broker.host,
        managed_broker.port,
        username=device_publisher_identity.username,
        password=device_publisher_identity.password,
    ) as client:
        yield client


def ota_worker_settings(settings: Settings) -> Settings:
    """A worker on an ingest identity the API provisions (so the broker's real ACLs
    apply to ota/progress), with a session that ends with it."""
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
            "ingest_status_flush_seconds": 0.2,
            "ingest_device_cache_seconds": 0.5,
        }
    )


@pytest.fixture
async def ota_worker(settings: Settings, redis: Redis) -> AsyncIterator[IngestWorker]:
    worker = IngestWorker(ota_worker_settings(settings), redis)
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
