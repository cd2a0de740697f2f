"""RabbitMQ 3.10 with its HTTP auth backend pointed at the API: the rules Mosquitto's
dynsec enforces, for real MQTT clients (docs/brokers.md)."""

from __future__ import annotations

import asyncio
import contextlib
import json

import aiomqtt

from core.settings import Settings
from services.broker_identities import ingest_identities
from tests.client import Api
from tests.contract import op
from tests.factories import create_device, register
from tests.integration.broker.conftest import closed_by_broker, next_message, nothing_more
from tests.rabbitmq import RabbitNode
from tests.system.rabbitmq.conftest import login_refused, rabbit_client

PAYLOAD = json.dumps({"temperature": 21.5}).encode()


def ingest_client(node: RabbitNode, settings: Settings) -> aiomqtt.Client:
    first = ingest_identities(settings)[0]
    return rabbit_client(node, first.username, first.password, first.client_id)


async def test_device_publishes_telemetry_the_ingest_identity_receives_it(
    api: Api, settings: Settings, rabbit_node: RabbitNode
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    async with ingest_client(rabbit_node, settings) as ingest:
        await ingest.subscribe("devices/+/telemetry", qos=1)
        async with rabbit_client(rabbit_node, device.mqtt_username, device.mqtt_password) as own:
            await own.publish(f"devices/{device.id}/telemetry", PAYLOAD, qos=1)
        message = await next_message(ingest, 10)
    assert message.topic.value == f"devices/{device.id}/telemetry"
    assert message.payload == PAYLOAD


async def test_wrong_password_unknown_user_and_foreign_client_id_refused(
    api: Api, rabbit_node: RabbitNode
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    other = await create_device(api, session)
    assert await login_refused(rabbit_node, device.mqtt_username, other.mqtt_password)
    assert await login_refused(rabbit_node, "f" * 24, device.mqtt_password)
    assert await login_refused(rabbit_node, "iot-ingest-1", "not-the-password")
    # Its own credentials with another client id (RabbitMQ 3.10 passes client_id to
    # the user path): refused; its own id: accepted.
    assert await login_refused(
        rabbit_node, device.mqtt_username, device.mqtt_password, client_id=other.id
    )
    assert not await login_refused(rabbit_node, device.mqtt_username, device.mqtt_password)


async def test_publish_to_another_devices_topic_not_delivered(
    api: Api, settings: Settings, rabbit_node: RabbitNode
) -> None:
    owner = await register(api)
    victim = await create_device(api, owner)
    attacker_session = await register(api)
    attacker = await create_device(api, attacker_session)
    async with ingest_client(rabbit_node, settings) as ingest:
        await ingest.subscribe("devices/+/telemetry", qos=1)
        async with rabbit_client(
            rabbit_node, attacker.mqtt_username, attacker.mqtt_password
        ) as client:
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                async with asyncio.timeout(5):
                    await client.publish(f"devices/{victim.id}/telemetry", PAYLOAD, qos=1)
            # The broker refused it: the attacker's session ends.
            assert await closed_by_broker(client)
        assert await nothing_more(ingest, 1.0)


async def test_subscribe_to_another_devices_commands_refused(
    api: Api, rabbit_node: RabbitNode
) -> None:
    owner = await register(api)
    victim = await create_device(api, owner)
    attacker_session = await register(api)
    attacker = await create_device(api, attacker_session)
    async with rabbit_client(rabbit_node, attacker.mqtt_username, attacker.mqtt_password) as c:
        refused = False
        try:
            async with asyncio.timeout(5):
                codes = await c.subscribe(f"devices/{victim.id}/commands/#", qos=1)
            assert isinstance(codes, list | tuple)
            refused = all(code.is_failure for code in codes)
        except (aiomqtt.MqttError, TimeoutError):
            refused = True
        if not refused:
            refused = await closed_by_broker(c, timeout=2)
        assert refused
    # Its own commands: granted.
    async with rabbit_client(rabbit_node, attacker.mqtt_username, attacker.mqtt_password) as c:
        codes = await c.subscribe(f"devices/{attacker.id}/commands/#", qos=1)
        assert isinstance(codes, list | tuple)
        assert not any(code.is_failure for code in codes)


async def test_rotate_and_delete_refuse_the_old_credentials_and_close_sessions(
    api: Api, rabbit_node: RabbitNode
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    bystander = await create_device(api, session)
    async with (
        rabbit_client(rabbit_node, device.mqtt_username, device.mqtt_password) as old_session,
        rabbit_client(rabbit_node, bystander.mqtt_username, bystander.mqtt_password) as other,
    ):
        await old_session.subscribe(f"devices/{device.id}/commands/#", qos=1)
        await other.subscribe(f"devices/{bystander.id}/commands/#", qos=1)
        result = await api.execute(
            op("RotateDeviceCredentials"), {"id": device.id}, token=session.access_token
        )
        new_password = result.data["rotateDeviceCredentials"]["mqttPassword"]
        # Closed through RabbitMQ's management API; another device stays connected.
        assert await closed_by_broker(old_session)
        assert not await closed_by_broker(other, timeout=0.5)
    assert await login_refused(rabbit_node, device.mqtt_username, device.mqtt_password)
    assert not await login_refused(rabbit_node, device.mqtt_username, new_password)
    async with rabbit_client(rabbit_node, device.mqtt_username, new_password) as open_session:
        await open_session.subscribe(f"devices/{device.id}/commands/#", qos=1)
        result = await api.execute(
            op("DeleteDevice"), {"id": device.id}, token=session.access_token
        )
        assert result.data["deleteDevice"] is True
        assert await closed_by_broker(open_session)
    assert await login_refused(rabbit_node, device.mqtt_username, new_password)
