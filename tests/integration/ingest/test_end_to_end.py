"""A device publishes over MQTT with its own credentials; users see it live and stored."""

from __future__ import annotations

import asyncio
import json
import sys

import aiomqtt
from redis.asyncio import Redis

from core.events import device_channel
from ingest.worker import IngestWorker
from tests.brokers import ManagedBroker
from tests.client import Api
from tests.contract import op
from tests.factories import create_device, register
from tests.integration.api.test_websocket import LEGACY_WS, TRANSPORT_WS
from tests.integration.graph.test_subscriptions import client
from tests.integration.live import wait_numsub
from tests.net import ROOT


async def test_deliver_device_reading_live_on_both_protocols_then_query(
    api: Api, api_server: str, redis: Redis, worker: IngestWorker, managed_broker: ManagedBroker
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    variables = {"deviceId": device.id}
    async with (
        client(api_server, session, TRANSPORT_WS) as modern,
        client(api_server, session, LEGACY_WS) as legacy,
    ):
        await modern.subscribe("1", op("ReadingAdded"), variables)
        await legacy.subscribe("1", op("ReadingAdded"), variables)
        # One Redis subscription per API process, however many GraphQL subscribers.
        await wait_numsub(redis, device_channel("readings", device.id), 1)
        async with aiomqtt.Client(
            managed_broker.host,
            managed_broker.port,
            username=device.mqtt_username,
            password=device.mqtt_password,
            identifier=device.id,  # the contract: its own id as client id
        ) as as_device:
            payload = {"temperature": {"value": 21.5, "unit": "°C"}, "humidity": 40}
            await as_device.publish(f"devices/{device.id}/telemetry", json.dumps(payload), qos=1)
        expected = [
            {"metric": "temperature", "value": 21.5, "unit": "°C"},
            {"metric": "humidity", "value": 40.0, "unit": None},
        ]
        for subscriber in (modern, legacy):
            data = await subscriber.next_data("1")
            assert data["readingAdded"]["deviceId"] == device.id
            assert data["readingAdded"]["values"] == expected

    async def stored() -> list[dict[str, object]]:
        result = await api.execute(op("Readings"), variables, token=session.access_token)
        return result.data["readings"]["edges"]  # type: ignore[no-any-return]

    async with asyncio.timeout(10):
        while not (edges := await stored()):
            await asyncio.sleep(0.05)
    assert [edge["node"]["values"] for edge in edges] == [expected]  # type: ignore[index]


async def test_simulate_fleet_publishes_with_device_credentials(
    api: Api,
    api_server: str,
    worker: IngestWorker,
    managed_broker: ManagedBroker,
    publisher: aiomqtt.Client,
) -> None:
    arguments = [
        "--devices",
        "2",
        "--rate",
        "4",
        "--duration",
        "3",
        "--api",
        api_server,
        "--mqtt-host",
        managed_broker.host,
        "--mqtt-port",
        str(managed_broker.port),
        "--email",
        "sim@example.com",
        "--password",
        "simulator-password",
    ]
    for _round in range(2):  # the second run reuses its devices, with rotated credentials
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "simulator",
            *arguments,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
        assert process.returncode == 0, output.decode()
        assert b"sent " in output
    login = await api.execute(
        op("Login"), {"email": "sim@example.com", "password": "simulator-password"}
    )
    token = login.data["login"]["accessToken"]
    devices = await api.execute(op("Devices"), {"first": 10}, token=token)
    nodes = [edge["node"] for edge in devices.data["devices"]["edges"]]
    assert sorted(node["name"] for node in nodes) == ["sim-0", "sim-1"]

    async def every_device_reported() -> bool:
        result = await api.execute(op("Devices"), {"first": 10}, token=token)
        edges = result.data["devices"]["edges"]
        return all(edge["node"]["latestReading"] for edge in edges)

    async with asyncio.timeout(10):
        while not await every_device_reported():
            await asyncio.sleep(0.1)
    readings = await api.execute(
        op("Readings"), {"deviceId": nodes[0]["id"], "first": 100}, token=token
    )
    metrics = {v["metric"] for e in readings.data["readings"]["edges"] for v in e["node"]["values"]}
    assert metrics == {"temperature", "humidity", "battery"}
    for node in nodes:  # the simulator's retained status would greet later tests' workers
        await publisher.publish(f"devices/{node['id']}/status", b"", qos=1, retain=True)
