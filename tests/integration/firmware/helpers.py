"""Helpers for firmware tests: multipart uploads, rollouts, devices over MQTT, waiting."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiomqtt

from tests.brokers import ManagedBroker
from tests.client import Api, Result
from tests.contract import op
from tests.factories import CreatedDevice, Session

PREFLIGHT = {"GraphQL-Require-Preflight": "1"}


@dataclass(frozen=True)
class Identity:
    username: str
    password: str


async def upload(
    api: Api,
    session: Session | None,
    data: bytes,
    *,
    version: str = "1.0.0",
    device_type: str = "esp32",
    headers: dict[str, str] | None = None,
    filename: str = "firmware.bin",
) -> Result:
    """uploadFirmware as a GraphQL multipart request (the contract's operation)."""
    operations = {
        "query": op("UploadFirmware"),
        "variables": {"file": None, "version": version, "deviceType": device_type},
    }
    all_headers = dict(PREFLIGHT if headers is None else headers)
    if session is not None:
        all_headers["Authorization"] = f"Bearer {session.access_token}"
    response = await api.http.post(
        "/graphql",
        data={"operations": json.dumps(operations), "map": json.dumps({"0": ["variables.file"]})},
        files={"0": (filename, data, "application/octet-stream")},
        headers=all_headers,
    )
    body = (
        response.json()
        if response.headers.get("content-type", "").startswith("application/json")
        else {"errors": [{"message": response.text, "extensions": {"code": None}}]}
    )
    return Result(response.status_code, body)


async def uploaded(api: Api, admin: Session, data: bytes, **options: Any) -> dict[str, Any]:
    """Upload and return the Firmware object."""
    result = await upload(api, admin, data, **options)
    return result.data["uploadFirmware"]  # type: ignore[no-any-return]


async def start(
    api: Api, admin: Session, firmware_id: str, devices: list[str], **options: Any
) -> dict[str, Any]:
    """startFirmwareUpdate with pace/abort options (a superset of the contract's operation)."""
    result = await api.execute(
        """mutation($input: StartFirmwareUpdateInput!) {
          startFirmwareUpdate(input: $input) {
            id state devicesPerMinute deviceTimeoutSeconds maxFailureRate failureMinDevices
            firmware { id version } devices { deviceId state progress error }
          }
        }""",
        {"input": {"firmwareId": firmware_id, "deviceIds": devices, **options}},
        token=admin.access_token,
    )
    return result.data["startFirmwareUpdate"]  # type: ignore[no-any-return]


async def rollout(api: Api, admin: Session, update_id: str) -> dict[str, Any]:
    result = await api.execute(op("FirmwareUpdate"), {"id": update_id}, token=admin.access_token)
    return result.data["firmwareUpdate"]  # type: ignore[no-any-return]


async def eventually[T](
    probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], *, timeout: float = 30
) -> T:
    """Poll `probe` until `accept` holds; AssertionError with the last value at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s; last value: {value}")
        await asyncio.sleep(0.1)


async def rollout_until(
    api: Api,
    admin: Session,
    update_id: str,
    accept: Callable[[dict[str, Any]], bool],
    *,
    timeout: float = 30,
) -> dict[str, Any]:
    return await eventually(lambda: rollout(api, admin, update_id), accept, timeout=timeout)


def states(update: dict[str, Any]) -> dict[str, str]:
    return {device["deviceId"]: device["state"] for device in update["devices"]}


@asynccontextmanager
async def as_device(broker: ManagedBroker, device: CreatedDevice) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(
        broker.host,
        broker.port,
        username=device.mqtt_username,
        password=device.mqtt_password,
        identifier=device.id,  # the contract: a device's client id is its own id
    ) as client:
        yield client


async def next_offer(client: aiomqtt.Client, timeout: float = 15) -> dict[str, Any]:
    """The next non-empty message on the device's OTA topic, decoded."""
    async with asyncio.timeout(timeout):
        async for message in client.messages:
            if message.topic.matches("devices/+/ota") and message.payload:
                assert isinstance(message.payload, bytes)
                return json.loads(message.payload)  # type: ignore[no-any-return]
    raise AssertionError("no offer")


async def report(
    client: aiomqtt.Client, device_id: str, update_id: str, state: str, **fields: Any
) -> None:
    payload = {"updateId": update_id, "state": state, **fields}
    await client.publish(f"devices/{device_id}/ota/progress", json.dumps(payload), qos=1)


async def retained_offer(
    broker: ManagedBroker, admin_identity: Identity, device: CreatedDevice
) -> bytes | None:
    """The offer retained on the device's OTA topic, or None, without waiting for silence.

    A marker is left retained on the device's commands topic first; subscribing to the
    OTA topic and then the marker's in one SUBSCRIBE, the broker sends the retained
    messages in that order, so the marker's arrival means there was no offer before it.
    """
    marker = f"devices/{device.id}/commands/ota-test-marker"
    async with aiomqtt.Client(
        broker.host, broker.port, username=admin_identity.username, password=admin_identity.password
    ) as admin:
        await admin.publish(marker, b"marker", qos=1, retain=True)
    try:
        async with as_device(broker, device) as client:
            await client.subscribe([(f"devices/{device.id}/ota", 1), (marker, 1)])
            async with asyncio.timeout(15):
                async for message in client.messages:
                    if message.topic.matches(marker):
                        return None
                    if message.payload:
                        assert isinstance(message.payload, bytes)
                        return message.payload
    finally:
        async with aiomqtt.Client(
            broker.host,
            broker.port,
            username=admin_identity.username,
            password=admin_identity.password,
        ) as admin:
            await admin.publish(marker, b"", qos=1, retain=True)
    raise AssertionError("the marker never arrived")
