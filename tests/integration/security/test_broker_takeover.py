"""A device cannot take another client's MQTT session, nor receive what is not its own.

Mosquitto hands an existing session (its subscriptions, its queued QoS 1 messages) to
whoever connects with its client id. Each identity is bound to its own client id, and
the broker sends a client only what its role may receive (publishClientReceive).
Everything here is real: a private Mosquitto, the API as a process, the ingest worker.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest
from beanie import PydanticObjectId
from pydantic import SecretStr
from redis.asyncio import Redis

from core.dynsec import connect_dynsec
from core.settings import Settings
from ingest.worker import IngestWorker
from models.readings import Reading
from services.broker_identities import ingest_identities
from services.broker_reconcile import reconcile
from tests.brokers import ManagedBroker
from tests.client import Api
from tests.factories import CreatedDevice, create_device, register
from tests.integration.ingest.conftest import start_worker, stop_worker
from tests.processes import api_process

READINGS = 20
# The API process's instance name: its broker client ids derive from it.
API_INSTANCE = "takeover-test"


@dataclass(frozen=True)
class Stack:
    broker: ManagedBroker
    api: Api
    settings: Settings  # the API process's, on the private broker
    worker: IngestWorker


def worker_login(settings: Settings) -> tuple[str, str, str]:
    """(username, password, client id) of the first ingest worker the API provisions."""
    first = ingest_identities(settings)[0]
    return first.username, first.password, first.client_id


def api_client_ids() -> dict[str, str]:
    """The API process's broker client ids: its dynsec connection, its OTA offers."""
    return {"api-admin": f"iot-api-{API_INSTANCE}", "api-ota": f"iot-api-{API_INSTANCE}-ota"}


@pytest.fixture
async def stack(settings: Settings, redis: Redis, tmp_path: Path) -> AsyncIterator[Stack]:
    """A private broker administered by an API process, and a worker on it."""
    broker = ManagedBroker(tmp_path / "mosquitto")
    broker.start()
    try:
        ours = settings.model_copy(
            update={
                "mqtt_port": broker.port,
                "mqtt_password": SecretStr(broker.admin_password),
            }
        )
        async with (
            api_process(
                ours,
                MQTT_PORT=str(broker.port),
                MQTT_PASSWORD=broker.admin_password,
                API_INSTANCE=API_INSTANCE,
            ) as url,
            Api(url) as api,
        ):
            username, password, client_id = worker_login(ours)
            worker_settings = ours.model_copy(
                update={
                    "mqtt_username": username,
                    "mqtt_password": SecretStr(password),
                    "ingest_client_id": client_id,
                    "ingest_batch_delay_ms": 5,
                }
            )
            worker, task = await start_worker(worker_settings, redis)
            try:
                yield Stack(broker, api, ours, worker)
            finally:
                await stop_worker(task)
    finally:
        broker.stop()


def as_device(
    broker: ManagedBroker, device: CreatedDevice, *, client_id: str | None = None
) -> aiomqtt.Client:
    """The device's own login; by default with its own id as client id (the contract)."""
    return aiomqtt.Client(
        broker.host,
        broker.port,
        username=device.mqtt_username,
        password=device.mqtt_password,
        identifier=client_id or device.id,
        clean_session=False,
        timeout=5,
    )


async def count_readings(device_id: str) -> int:
    return await Reading.find(Reading.device_id == PydanticObjectId(device_id)).count()


async def stored_after(device_id: str, expected: int, *, timeout: float = 15) -> int:
    """How many of the device's readings are stored, waiting up to `timeout` for all."""
    try:
        async with asyncio.timeout(timeout):
            while await count_readings(device_id) < expected:
                await asyncio.sleep(0.1)
    except TimeoutError:
        pass
    return await count_readings(device_id)


async def stream(client: aiomqtt.Client, device_id: str) -> bool:
    """READINGS QoS 1 readings, one every 50 ms; False if the connection was taken."""
    try:
        for number in range(READINGS):
            payload = json.dumps({"n": number})
            await client.publish(f"devices/{device_id}/telemetry", payload, qos=1)
            await asyncio.sleep(0.05)
    except aiomqtt.MqttError:
        return False
    return True


@dataclass(frozen=True)
class Attempt:
    refused: bool
    received: int


async def take_over(broker: ManagedBroker, attacker: CreatedDevice, client_id: str) -> Attempt:
    """Connect as `client_id` with a persistent session; count what arrives in 1.5 s."""
    received = 0
    try:
        async with as_device(broker, attacker, client_id=client_id) as client:
            try:
                async with asyncio.timeout(1.5):
                    async for _ in client.messages:
                        received += 1
            except (TimeoutError, aiomqtt.MqttError):
                pass
    except aiomqtt.MqttCodeError as err:
        assert "authori" in str(err).lower(), err
        return Attempt(refused=True, received=received)
    except aiomqtt.MqttError:
        pass  # kicked out again by the rightful owner
    return Attempt(refused=False, received=received)


@pytest.mark.parametrize("target", ["worker", "device", "api-admin", "api-ota"])
async def test_connect_device_foreign_client_id_refused_nothing_lost(
    stack: Stack, target: str
) -> None:
    victim_owner, attacker_owner = await register(stack.api), await register(stack.api)
    victim = await create_device(stack.api, victim_owner, name="victim")
    attacker = await create_device(stack.api, attacker_owner, name="attacker")
    client_id = {
        "worker": worker_login(stack.settings)[2],
        "device": victim.id,
        **api_client_ids(),
    }[target]

    async with as_device(stack.broker, victim) as sender:
        sending = asyncio.create_task(stream(sender, victim.id))
        await asyncio.sleep(0.1)
        attempt = await take_over(stack.broker, attacker, client_id)
        sender_kept = await sending

    stored = await stored_after(victim.id, READINGS)
    assert (attempt, sender_kept, stored) == (Attempt(True, 0), True, READINGS)
    # The API's own connections survived the attempt: it still provisions devices.
    late = await create_device(stack.api, victim_owner, name="late")
    async with as_device(stack.broker, late):
        pass


async def test_subscribe_misconfigured_role_foreign_topic_receives_nothing(stack: Stack) -> None:
    victim_owner, attacker_owner = await register(stack.api), await register(stack.api)
    victim = await create_device(stack.api, victim_owner, name="victim")
    attacker = await create_device(stack.api, attacker_owner, name="attacker")
    foreign = f"devices/{victim.id}/telemetry"
    async with connect_dynsec(
        stack.broker.host,
        stack.broker.port,
        username=stack.broker.admin_username,
        password=stack.broker.admin_password,
    ) as dynsec:
        # An operator's mistake: the attacker's role may subscribe to a foreign topic.
        await dynsec.execute(
            {"command": "addRoleACL", "rolename": f"device-{attacker.id}",
             "acltype": "subscribePattern", "topic": foreign, "allow": True},
        )  # fmt: skip

    async with as_device(stack.broker, attacker) as listener:
        await listener.subscribe(foreign, qos=1)
        async with as_device(stack.broker, victim) as sender:
            assert await stream(sender, victim.id)
        received = 0
        try:
            async with asyncio.timeout(1.0):
                async for _ in listener.messages:
                    received += 1
        except TimeoutError:
            pass

    assert received == 0
    assert await stored_after(victim.id, READINGS) == READINGS


async def test_reconcile_device_client_without_client_id_bound(
    api: Api, settings: Settings, tmp_path: Path
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    broker = ManagedBroker(tmp_path / "mosquitto")
    broker.start()
    try:
        async with connect_dynsec(
            broker.host, broker.port, username=broker.admin_username, password=broker.admin_password
        ) as dynsec:
            ours = settings.model_copy(
                update={"mqtt_port": broker.port, "mqtt_password": SecretStr(broker.admin_password)}
            )
            await reconcile(dynsec, ours)
            # As created before client ids were bound; receiving allowed by default; the
            # one identity every worker shared.
            worker = ingest_identities(ours)[0]
            await dynsec.execute(
                {"command": "modifyClient", "username": device.id, "clientid": ""},
                {"command": "modifyClient", "username": worker.username, "clientid": ""},
                {"command": "createClient", "username": ours.mqtt_ingest_username,
                 "password": "p" * 16},
                {"command": "setDefaultACLAccess",
                 "acls": [{"acltype": "publishClientReceive", "allow": True}]},
            )  # fmt: skip
            before = await dynsec.execute({"command": "getClient", "username": device.id})
            report = await reconcile(dynsec, ours)
            client, default, listing = await dynsec.execute(
                {"command": "getClient", "username": device.id},
                {"command": "getDefaultACLAccess"},
                {"command": "listClients", "verbose": True, "count": -1},
            )
        stranger = f"stranger-{uuid.uuid4().hex[:8]}"
        assert "clientid" not in before[0]["data"]["client"]
        assert report.devices_repaired == 1
        assert client["data"]["client"].get("clientid") == device.id
        bound = {c["username"]: c.get("clientid") for c in listing["data"]["clients"]}
        assert bound[worker.username] == worker.client_id == "ingest-1"
        assert ours.mqtt_ingest_username not in bound
        receive = {a["acltype"]: a["allow"] for a in default["data"]["acls"]}
        assert receive["publishClientReceive"] is False
        assert (await take_over(broker, device, stranger)).refused
        async with as_device(broker, device):
            pass
    finally:
        broker.stop()
