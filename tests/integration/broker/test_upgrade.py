"""Upgrading to bound client ids loses nothing a worker's session held.

Before client ids were bound, every worker logged in as the one `iot-ingest` with the
client id `ingest-<n>`. The reconcile replaces that identity with `iot-ingest-<n>` bound
to `ingest-<n>`: the upgraded worker resumes its persistent session, and the QoS 1
messages the broker queued for it while it was down are delivered, not stranded.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import SecretStr

from core.dynsec import connect_dynsec
from core.settings import Settings
from services.broker_identities import INGEST_ROLE, ingest_identities
from services.broker_reconcile import reconcile
from tests.brokers import ManagedBroker

QUEUED = 25
TOPIC = "devices/{}/telemetry"


def _session_properties() -> Properties:
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 3600
    return properties


async def test_reconcile_upgraded_worker_resumes_session_queued_messages_delivered(
    settings: Settings, tmp_path: Path
) -> None:
    broker = ManagedBroker(tmp_path / "mosquitto")
    broker.start()
    try:
        ours = settings.model_copy(
            update={"mqtt_port": broker.port, "mqtt_password": SecretStr(broker.admin_password)}
        )
        old_password = "old-shared-ingest-password"
        device_id = uuid.uuid4().hex[:24]
        async with connect_dynsec(
            broker.host, broker.port, username=broker.admin_username, password=broker.admin_password
        ) as dynsec:
            # The broker as the code before bound client ids left it.
            await dynsec.execute(
                {"command": "createRole", "rolename": INGEST_ROLE,
                 "acls": [{"acltype": "subscribePattern", "topic": "devices/+/telemetry",
                           "allow": True}]},
                {"command": "createClient", "username": ours.mqtt_ingest_username,
                 "password": old_password, "roles": [{"rolename": INGEST_ROLE}]},
                {"command": "createRole", "rolename": "old-device",
                 "acls": [{"acltype": "publishClientSend", "topic": "devices/#",
                           "allow": True}]},
                {"command": "createClient", "username": "old-device", "password": "p" * 16,
                 "roles": [{"rolename": "old-device"}]},
            )  # fmt: skip
            async with aiomqtt.Client(
                broker.host,
                broker.port,
                username=ours.mqtt_ingest_username,
                password=old_password,
                identifier="ingest-1",
                protocol=aiomqtt.ProtocolVersion.V5,
                clean_start=False,
                properties=_session_properties(),
            ) as old_worker:
                await old_worker.subscribe(TOPIC.format("+"), qos=1)
            # The worker is down (being upgraded) while devices go on publishing.
            async with aiomqtt.Client(
                broker.host, broker.port, username="old-device", password="p" * 16
            ) as device:
                for n in range(QUEUED):
                    await device.publish(TOPIC.format(device_id), str(n), qos=1)

            report = await reconcile(dynsec, ours)
            assert report.services_fixed

        first = ingest_identities(ours)[0]
        assert (first.username, first.client_id) == (f"{ours.mqtt_ingest_username}-1", "ingest-1")
        received: list[str] = []
        async with aiomqtt.Client(
            broker.host,
            broker.port,
            username=first.username,
            password=first.password,
            identifier=first.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=_session_properties(),
        ) as upgraded:
            async with asyncio.timeout(10):
                async for message in upgraded.messages:
                    received.append(bytes(message.payload).decode())  # type: ignore[arg-type]
                    if len(received) == QUEUED:
                        break
        assert received == [str(n) for n in range(QUEUED)]
    finally:
        broker.stop()
