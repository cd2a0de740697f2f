"""The whole OTA flow with simulated devices (python -m simulator --ota):
upload -> list -> rollout -> live progress -> firmwareVersion; tampering; failures."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiomqtt

from firmware import storage
from ingest.worker import IngestWorker
from models.firmware import Firmware
from tests.brokers import ManagedBroker
from tests.client import Api
from tests.contract import op
from tests.factories import PASSWORD, CreatedDevice, Session, admin_and_user, create_device
from tests.integration.firmware.helpers import rollout_until, start, states, uploaded
from tests.integration.firmware.simulator import SimulatorProcess
from tests.integration.graph.test_subscriptions import Client
from tests.integration.graph.test_subscriptions import client as ws_client

SIMULATOR_TYPE = "simulator"  # what the simulator's devices are


async def simulated_devices(api: Api, admin: Session, count: int) -> list[CreatedDevice]:
    """Devices the simulator will take over (it reuses sim-N devices it can see)."""
    return [
        await create_device(api, admin, name=f"sim-{n}", type=SIMULATOR_TYPE) for n in range(count)
    ]


@asynccontextmanager
async def simulator(
    api_server: str,
    broker: ManagedBroker,
    admin: Session,
    devices: list[CreatedDevice],
    cleaner: aiomqtt.Client,
    *options: str,
) -> AsyncIterator[SimulatorProcess]:
    """The simulator as the admin (so it finds the devices), OTA on, until the block ends."""
    arguments = [
        "--devices", str(len(devices)), "--rate", "1", "--duration", "0",
        "--api", api_server, "--mqtt-host", broker.host, "--mqtt-port", str(broker.port),
        "--email", admin.email, "--password", PASSWORD, "--report-every", "600",
        "--ota", "--ota-install-seconds", "0.2", *options,
    ]  # fmt: skip
    try:
        async with SimulatorProcess(*arguments) as process:
            yield process
    finally:
        for device in devices:  # its retained status would greet later tests' workers
            await cleaner.publish(f"devices/{device.id}/status", b"", qos=1, retain=True)


async def progress_until_complete(watcher: Client, timeout: float = 90) -> list[dict[str, Any]]:
    """Every FirmwareUpdateProgress event until the subscription completes."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    async with asyncio.timeout(timeout):
        while True:
            message = json.loads(await watcher.ws.recv(decode=True))
            kind = {"data": "next"}.get(message["type"], message["type"])
            if kind == "complete":
                return events
            if kind == "next":
                assert "errors" not in message["payload"], message
                events.append(message["payload"]["data"]["firmwareUpdateProgress"])
            assert time.monotonic() < deadline


def sequence(events: list[dict[str, Any]], device_id: str) -> list[str]:
    """A device's states as shown, repeats (progress steps) folded."""
    shown: list[str] = []
    for event in events:
        if event["deviceId"] == device_id and (not shown or shown[-1] != event["state"]):
            shown.append(event["state"])
    return shown


async def test_rollout_to_simulated_devices_succeeds_live_through_subscription(
    api: Api,
    api_server: str,
    managed_broker: ManagedBroker,
    ota_worker: IngestWorker,
    device_publisher: aiomqtt.Client,
) -> None:
    admin, _ = await admin_and_user(api)
    devices = await simulated_devices(api, admin, 3)
    image = os.urandom(400_000)
    firmware = await uploaded(api, admin, image, version="2.4.0", device_type=SIMULATOR_TYPE)
    listed = await api.execute(
        op("Firmwares"), {"deviceType": SIMULATOR_TYPE}, token=admin.access_token
    )
    assert listed.data["firmwares"] == [firmware]
    started = await api.execute(
        op("StartFirmwareUpdate"),
        {"firmwareId": firmware["id"], "deviceIds": [d.id for d in devices]},
        token=admin.access_token,
    )
    update = started.data["startFirmwareUpdate"]
    async with ws_client(api_server, admin) as watcher:
        await watcher.subscribe("1", op("FirmwareUpdateProgress"), {"id": update["id"]})
        # Devices come online after the subscription: every step is seen live.
        async with simulator(
            api_server, managed_broker, admin, devices, device_publisher,
            "--ota-interrupt-after", "150000",
        ) as process:  # fmt: skip
            events = await progress_until_complete(watcher)
            await process.wait_for(
                lambda lines: sum(" SUCCEEDED 2.4.0" in line for line in lines) == 3
            )
    for device in devices:
        shown = sequence(events, device.id)
        assert shown[-4:] == ["DOWNLOADING", "VERIFYING", "INSTALLING", "SUCCEEDED"], shown
    # Each device's download was cut at 150,000 bytes and resumed with Range.
    assert sum("(resumed at [" in line for line in process.lines) == 3
    final = await rollout_until(api, admin, update["id"], lambda u: u["state"] == "SUCCEEDED")
    assert set(states(final).values()) == {"SUCCEEDED"}
    result = await api.execute(op("Devices"), {"first": 10}, token=admin.access_token)
    versions = {
        e["node"]["id"]: e["node"]["firmwareVersion"] for e in result.data["devices"]["edges"]
    }
    assert versions == {d.id: "2.4.0" for d in devices}


async def test_rollout_of_tampered_image_fails_verification_on_devices(
    api: Api,
    api_server: str,
    managed_broker: ManagedBroker,
    ota_worker: IngestWorker,
    device_publisher: aiomqtt.Client,
) -> None:
    admin, _ = await admin_and_user(api)
    devices = await simulated_devices(api, admin, 3)
    firmware = await uploaded(api, admin, os.urandom(300_000), device_type=SIMULATOR_TYPE)
    # One byte changes in GridFS, behind the platform's back.
    document = await Firmware.get(firmware["id"])
    assert document is not None
    chunks = storage.database()[f"{storage.BUCKET}.chunks"]
    chunk = await chunks.find_one({"files_id": document.file_id, "n": 1})
    assert chunk is not None
    data = bytearray(chunk["data"])
    data[1000] ^= 0x01
    await chunks.update_one({"_id": chunk["_id"]}, {"$set": {"data": bytes(data)}})
    update = await start(api, admin, firmware["id"], [d.id for d in devices], devicesPerMinute=600)
    async with simulator(api_server, managed_broker, admin, devices, device_publisher):
        final = await rollout_until(
            api, admin, update["id"], lambda u: u["state"] == "FAILED", timeout=90
        )
    for device in final["devices"]:
        assert device["state"] == "FAILED"
        assert device["error"] == "verification failed: SHA-256 does not match the offer"
    result = await api.execute(op("Devices"), {"first": 10}, token=admin.access_token)
    assert {e["node"]["firmwareVersion"] for e in result.data["devices"]["edges"]} == {None}


async def test_simulated_failures_pause_rollout_at_threshold(
    api: Api,
    api_server: str,
    managed_broker: ManagedBroker,
    ota_worker: IngestWorker,
    device_publisher: aiomqtt.Client,
) -> None:
    admin, _ = await admin_and_user(api)
    devices = await simulated_devices(api, admin, 3)
    firmware = await uploaded(api, admin, os.urandom(20_000), device_type=SIMULATOR_TYPE)
    update = await start(
        api,
        admin,
        firmware["id"],
        [d.id for d in devices],
        devicesPerMinute=1,  # the second device would go a minute after the first
        maxFailureRate=0.5,
        failureMinDevices=1,
    )
    async with simulator(
        api_server, managed_broker, admin, devices, device_publisher, "--ota-fail-rate", "1"
    ):
        paused = await rollout_until(
            api, admin, update["id"], lambda u: u["state"] == "PAUSED", timeout=50
        )
    assert states(paused) == {
        devices[0].id: "FAILED",
        devices[1].id: "PENDING",
        devices[2].id: "PENDING",
    }
    assert paused["devices"][0]["error"] == "installation failed (simulated)"
    cancelled = await api.execute(
        op("CancelFirmwareUpdate"), {"id": update["id"]}, token=admin.access_token
    )
    assert cancelled.data["cancelFirmwareUpdate"]["state"] == "CANCELLED"
    final = await rollout_until(api, admin, update["id"], lambda u: u["state"] == "CANCELLED")
    assert sorted(states(final).values()) == ["CANCELLED", "CANCELLED", "FAILED"]
