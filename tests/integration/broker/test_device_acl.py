"""The broker, not the worker, stops a device from speaking or listening for another."""

from __future__ import annotations

import secrets

from core.dynsec import connect_dynsec
from core.settings import Settings
from services.broker_identities import API_OTA_ROLE, create_client
from tests.brokers import ManagedBroker
from tests.client import Api
from tests.factories import create_device, register
from tests.integration.broker.conftest import (
    granted,
    ingest_login,
    login_refused,
    mqtt,
    next_message,
    nothing_more,
)


async def test_publish_other_devices_telemetry_never_reaches_ingest(
    api: Api, settings: Settings, managed_broker: ManagedBroker
) -> None:
    session = await register(api)
    a, b = await create_device(api, session, name="a"), await create_device(api, session, name="b")
    async with (
        mqtt(managed_broker, *ingest_login(settings)) as ingest,
        mqtt(managed_broker, a.mqtt_username, a.mqtt_password) as device_a,
    ):
        # Not shared, so every message reaches this subscriber (no other group member).
        assert granted(await ingest.subscribe("devices/+/telemetry", qos=1)) == [True]
        for suffix in ("telemetry", "status", "logs", "ota/progress"):
            await device_a.publish(f"devices/{b.id}/{suffix}", b'{"forged": 1}', qos=1)
        await device_a.publish(f"devices/{a.id}/telemetry", b'{"own": 1}', qos=1)
        # The forged messages went first: had the broker let them through, one would
        # arrive before A's own one.
        first = await next_message(ingest)
        assert (first.topic.value, first.payload) == (f"devices/{a.id}/telemetry", b'{"own": 1}')
        assert await nothing_more(ingest)


async def test_publish_own_topics_reach_ingest_shared_subscription(
    api: Api, settings: Settings, managed_broker: ManagedBroker
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    filters = [f"devices/+/{s}" for s in ("telemetry", "status", "logs", "ota/progress")]
    group = settings.ingest_share_group
    async with (
        mqtt(managed_broker, *ingest_login(settings)) as ingest,
        mqtt(managed_broker, device.mqtt_username, device.mqtt_password) as client,
    ):
        shared = [(f"$share/{group}/{f}", 1) for f in filters]
        assert granted(await ingest.subscribe(shared)) == [True] * 4
        assert granted(await ingest.subscribe([(f, 1) for f in filters])) == [True] * 4
        # The worker's identity reads device uplinks and nothing else.
        refused = [("#", 1), ("devices/#", 1), ("devices/+/ota", 1), ("$SYS/#", 1)]
        assert granted(await ingest.subscribe(refused)) == [False] * 4
        received: set[str] = set()
        for suffix in ("telemetry", "status", "logs", "ota/progress"):
            await client.publish(f"devices/{device.id}/{suffix}", b"{}", qos=1)
        while len(received) < 4:
            received.add((await next_message(ingest)).topic.value)
    assert received == {
        f"devices/{device.id}/{s}" for s in ("telemetry", "status", "logs", "ota/progress")
    }


async def test_subscribe_other_devices_ota_refused(api: Api, managed_broker: ManagedBroker) -> None:
    session = await register(api)
    a, b = await create_device(api, session, name="a"), await create_device(api, session, name="b")
    async with mqtt(managed_broker, a.mqtt_username, a.mqtt_password) as device_a:
        foreign = [
            (f"devices/{b.id}/ota", 1),
            (f"devices/{b.id}/commands/#", 1),
            ("devices/+/ota", 1),
            ("#", 1),
            (f"$share/x/devices/{b.id}/ota", 1),
        ]
        assert granted(await device_a.subscribe(foreign)) == [False] * len(foreign)
        own = [(f"devices/{a.id}/ota", 1), (f"devices/{a.id}/commands/#", 1)]
        assert granted(await device_a.subscribe(own)) == [True, True]


async def test_publish_api_identity_reaches_only_addressed_device(
    api: Api, settings: Settings, managed_broker: ManagedBroker
) -> None:
    session = await register(api)
    a, b = await create_device(api, session, name="a"), await create_device(api, session, name="b")
    # An identity of the API's OTA role: the API's own is bound to its running connection.
    ota, password = f"iot-api-acl-test-{secrets.token_hex(4)}-ota", secrets.token_urlsafe(16)
    async with connect_dynsec(
        managed_broker.host,
        managed_broker.port,
        username=managed_broker.admin_username,
        password=managed_broker.admin_password,
    ) as dynsec:
        await dynsec.execute(create_client(settings, ota, password, API_OTA_ROLE))
    async with (
        mqtt(managed_broker, a.mqtt_username, a.mqtt_password) as device_a,
        mqtt(managed_broker, ota, password) as platform,
        mqtt(managed_broker, *ingest_login(settings)) as ingest,
    ):
        await device_a.subscribe([(f"devices/{b.id}/ota", 1), (f"devices/{a.id}/ota", 1)])
        # The ingest identity may not send OTA offers; B's offer is not A's to read.
        await ingest.publish(f"devices/{a.id}/ota", b"from-ingest", qos=1)
        await platform.publish(f"devices/{b.id}/ota", b"for-b", qos=1)
        await platform.publish(f"devices/{a.id}/ota", b"for-a", qos=1)
        message = await next_message(device_a)
        assert (message.topic.value, message.payload) == (f"devices/{a.id}/ota", b"for-a")
        assert await nothing_more(device_a)


async def test_connect_bad_credentials_refused(api: Api, managed_broker: ManagedBroker) -> None:
    session = await register(api)
    device = await create_device(api, session)
    other = await create_device(api, session)
    assert not await login_refused(managed_broker, device.mqtt_username, device.mqtt_password)
    assert await login_refused(managed_broker, device.mqtt_username, device.mqtt_password + "x")
    assert await login_refused(managed_broker, device.mqtt_username, other.mqtt_password)
    assert await login_refused(managed_broker, "0" * 24, device.mqtt_password)
    assert await login_refused(managed_broker, None, None)
    assert await login_refused(managed_broker, "", "")
