"""Scale-out: two API processes and two ingest workers on one broker, Redis and database.

The documented topology (README, Deployment): any API serves any subscription,
because live events come through Redis; the workers share device traffic through
the broker's `$share` group and each message is stored once.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from typing import Any

import aiomqtt
import httpx
from beanie import PydanticObjectId
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from core.events import owner_channel
from core.settings import Settings
from models.readings import Reading
from services.broker_identities import ingest_identities
from tests.brokers import ManagedBroker
from tests.client import Api
from tests.contract import op
from tests.factories import CreatedDevice, admin_and_user, create_device
from tests.integration.graph.test_subscriptions import Client, client
from tests.integration.live import wait_numsub
from tests.net import ROOT, free_port
from tests.processes import api_process, settings_environment

DEVICES = 4
PER_DEVICE = 10


@contextmanager
def worker_process(settings: Settings, client_id: str, metrics_port: int) -> Iterator[str]:
    """`python -m ingest` as the platform's ingest identity bound to `client_id`; yields
    its /metrics URL."""
    (identity,) = [i for i in ingest_identities(settings) if i.client_id == client_id]
    env = settings_environment(
        settings,
        MQTT_USERNAME=identity.username,
        MQTT_PASSWORD=identity.password,
        INGEST_CLIENT_ID=identity.client_id,
        # The group the API grants the ingest identity; no session left behind.
        INGEST_SHARE_GROUP=settings.ingest_share_group,
        INGEST_SESSION_EXPIRY_SECONDS="0",
        INGEST_BATCH_DELAY_MS="5",
        INGEST_METRICS_PORT=str(metrics_port),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "ingest"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{metrics_port}/metrics"
    finally:
        process.terminate()
        process.wait(timeout=15)


async def sample(http: httpx.AsyncClient, url: str, name: str) -> float:
    """One unlabelled sample of a worker's /metrics; 0 while it does not answer yet."""
    try:
        response = await http.get(url, timeout=2)
    except httpx.TransportError:
        return 0.0
    for family in text_string_to_metric_families(response.text):
        for found in family.samples:
            if found.name == name and not found.labels:
                return float(found.value)
    return 0.0


@asynccontextmanager
async def devices_online(
    broker: ManagedBroker, devices: list[CreatedDevice]
) -> AsyncIterator[list[aiomqtt.Client]]:
    """Each device connected as itself (its broker identity, its ACL)."""
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                aiomqtt.Client(
                    broker.host,
                    broker.port,
                    username=device.mqtt_username,
                    password=device.mqtt_password,
                    identifier=device.id,  # the contract: its own id as client id
                )
            )
            for device in devices
        ]


async def readings_received(ws: Client, count: int) -> set[tuple[str, float]]:
    """(deviceId, n) of the next `count` readingAdded events."""
    seen: set[tuple[str, float]] = set()
    for _ in range(count):
        reading = (await ws.next_data())["readingAdded"]
        values = {v["metric"]: v["value"] for v in reading["values"]}
        seen.add((reading["deviceId"], values["n"]))
    return seen


async def test_scale_out_two_apis_two_workers_deliver_and_store_once(
    api: Api, settings: Settings, redis: Redis, managed_broker: ManagedBroker
) -> None:
    # The first registration is the ADMIN: the owner is the second, a USER on its own channel.
    _, owner = await admin_and_user(api)
    devices = [await create_device(api, owner, name=f"s{i}") for i in range(DEVICES)]
    ports = free_port(), free_port()
    async with AsyncExitStack() as stack:
        first_api, second_api = await asyncio.gather(
            stack.enter_async_context(api_process(settings)),
            stack.enter_async_context(api_process(settings)),
        )
        metrics = [
            stack.enter_context(worker_process(settings, identity.client_id, port))
            for identity, port in zip(ingest_identities(settings), ports, strict=True)
        ]
        http = await stack.enter_async_context(httpx.AsyncClient())
        async with asyncio.timeout(20):
            while not all([await sample(http, u, "ingest_mqtt_connected") for u in metrics]):
                await asyncio.sleep(0.1)

        # A subscriber on each API, for every device of the owner.
        on_first = await stack.enter_async_context(client(first_api, owner))
        on_second = await stack.enter_async_context(client(second_api, owner))
        for ws in (on_first, on_second):
            await ws.subscribe("1", op("ReadingAdded"), {"deviceId": None})
        # One Redis subscription per API process, however many subscribers it has.
        await wait_numsub(redis, owner_channel("readings", owner.user_id), 2)

        async with devices_online(managed_broker, devices) as publishers:
            for n in range(PER_DEVICE):
                for device, publisher in zip(devices, publishers, strict=True):
                    payload = json.dumps({"n": n})
                    await publisher.publish(f"devices/{device.id}/telemetry", payload, qos=1)

        expected = {(d.id, float(n)) for d in devices for n in range(PER_DEVICE)}
        total = len(expected)
        assert await readings_received(on_first, total) == expected
        assert await readings_received(on_second, total) == expected

        async with asyncio.timeout(20):
            while (
                sum([await sample(http, u, "ingest_readings_stored_total") for u in metrics])
                < total
            ):
                await asyncio.sleep(0.1)
        stored_by = [await sample(http, u, "ingest_readings_stored_total") for u in metrics]

    # Both workers took a share, and together they stored each message once.
    assert all(count > 0 for count in stored_by), stored_by
    assert sum(stored_by) == total
    ids = [PydanticObjectId(d.id) for d in devices]
    collection = Reading.get_pymongo_collection()
    assert await collection.count_documents({"device_id": {"$in": ids}}) == total
    pairs: list[dict[str, Any]] = await (
        await collection.aggregate(
            [
                {"$match": {"device_id": {"$in": ids}}},
                {"$unwind": "$values"},
                {"$group": {"_id": {"d": "$device_id", "n": "$values.value"}}},
            ]
        )
    ).to_list()
    assert len(pairs) == total
