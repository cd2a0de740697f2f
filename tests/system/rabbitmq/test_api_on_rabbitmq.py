"""An API process whose broker is RabbitMQ (BROKER_IDENTITIES=http): device identity is
the HTTP auth backend's business, so the API writes nothing to a dynsec plugin that
is not there, and devices are created, commanded and rotated through RabbitMQ."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from core.settings import Settings
from models.devices import Device, DeviceStatus
from tests.client import Api
from tests.contract import op
from tests.factories import create_device, register
from tests.processes import api_process
from tests.rabbitmq import RabbitNode
from tests.system.faults.stack import eventually
from tests.system.rabbitmq.conftest import amqp_workers, login_refused, rabbit_client

# Well below the 5 s a dynsec command waits for an answer that never comes.
PROMPT_SECONDS = 3.0


async def _online(device_id: str) -> bool:
    device = await Device.get(device_id)
    return device is not None and device.status == DeviceStatus.ONLINE


async def test_api_on_rabbitmq_creates_commands_and_rotates_devices(
    settings: Settings, rabbit_node: RabbitNode, tmp_path: Path
) -> None:
    async with (
        api_process(
            settings,
            MQTT_HOST=rabbit_node.host,
            MQTT_PORT=str(rabbit_node.mqtt_port),
            BROKER_IDENTITIES="http",
        ) as url,
        Api(url) as api,
        amqp_workers(settings, [rabbit_node], tmp_path),
    ):
        session = await register(api)
        started = time.monotonic()
        device = await create_device(api, session, name="on-rabbit")
        took = time.monotonic() - started
        assert took < PROMPT_SECONDS, took

        async with rabbit_client(rabbit_node, device.mqtt_username, device.mqtt_password) as client:
            await client.subscribe(f"devices/{device.id}/commands/+", qos=1)
            await client.publish(f"devices/{device.id}/status", b"online", qos=1)
            await eventually(lambda: _online(device.id), timeout=15, what="the device ONLINE")
            sent = await api.execute(
                op("SendCommand"),
                {"deviceId": device.id, "name": "reboot"},
                token=session.access_token,
            )
            assert sent.codes == []
            command = sent.data["sendCommand"]
            async with asyncio.timeout(10):
                message = await anext(aiter(client.messages))
            assert str(message.topic) == f"devices/{device.id}/commands/{command['id']}"
            assert isinstance(message.payload, bytes)
            assert json.loads(message.payload)["name"] == "reboot"

        rotated = await api.execute(
            op("RotateDeviceCredentials"), {"id": device.id}, token=session.access_token
        )
        assert rotated.codes == []
        new_password = rotated.data["rotateDeviceCredentials"]["mqttPassword"]
        assert await login_refused(rabbit_node, device.mqtt_username, device.mqtt_password)
        assert not await login_refused(rabbit_node, device.mqtt_username, new_password)
