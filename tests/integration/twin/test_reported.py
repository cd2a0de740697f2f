"""twin/reported and twin/get through the real broker and ingest worker."""

from __future__ import annotations

import json

from redis.asyncio import Redis

from core.settings import Settings
from ingest.worker import IngestWorker
from tests.brokers import ManagedBroker
from tests.client import Api
from tests.factories import create_device, register
from tests.integration.twin.conftest import (
    desired_of,
    device_client,
    eventually,
    next_message,
    running_worker,
    twin,
    twin_worker_settings,
    update,
)


async def test_report_merges_into_reported_and_delta(
    api: Api, managed_broker: ManagedBroker, twin_worker: IngestWorker
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    await update(api, user, device.id, {"interval": 5, "led": {"color": "red", "level": 2}})
    topic = f"devices/{device.id}/twin/reported"
    async with device_client(managed_broker, device) as client:
        report = {"interval": 10, "led": {"color": "red", "level": 1}, "fw": "1.0", "up": 3}
        await client.publish(topic, json.dumps(report), qos=1)

        async def reported() -> bool:
            return (await twin(api, user, device.id))["reported"].get("up") == 3

        await eventually(reported, what="the report merged")
        state = await twin(api, user, device.id)
        assert state["delta"] == {"interval": 5, "led": {"level": 2}}
        assert state["reportedUpdatedAt"] is not None
        # RFC 7396 on reported too: null removes, objects merge.
        patch = {"interval": 5, "led": {"level": 2}, "up": None}
        await client.publish(topic, json.dumps(patch), qos=1)

        async def converged() -> bool:
            return (await twin(api, user, device.id))["delta"] == {}

        await eventually(converged, what="the delta emptied")
    state = await twin(api, user, device.id)
    assert state["reported"] == {"interval": 5, "led": {"color": "red", "level": 2}, "fw": "1.0"}
    assert state["version"] == 1  # reports never move the desired version


async def test_bad_reports_dropped_counted_stream_goes_on(
    api: Api, managed_broker: ManagedBroker, settings: Settings, redis: Redis
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    topic = f"devices/{device.id}/twin/reported"
    worker_settings = twin_worker_settings(settings, twin_max_bytes=1024)
    async with (
        running_worker(worker_settings, redis) as worker,
        device_client(managed_broker, device) as client,
    ):
        for payload in (b"not json", b"[1, 2]", b'"x"', b'{"$where": 1}', b'{"a": NaN}', b""):
            await client.publish(topic, payload, qos=1)
        await client.publish(topic, json.dumps({"pad": "x" * (17 * 1024)}), qos=1)
        await client.publish(topic, json.dumps({"a": "x" * 700}), qos=1)
        await client.publish(topic, json.dumps({"b": "y" * 700}), qos=1)  # 1,400 bytes merged
        await client.publish(topic, json.dumps({"ok": True}), qos=1)

        async def ok_applied() -> bool:
            return (await twin(api, user, device.id))["reported"].get("ok") is True

        await eventually(ok_applied, what="the good report after the bad ones")
        stats = worker.stats
        assert stats.dropped_count("bad_twin_reported") == 6
        assert stats.dropped_count("too_large") == 1
        assert stats.dropped_count("twin_too_large") == 1
    assert set((await twin(api, user, device.id))["reported"]) == {"a", "ok"}


async def test_retained_report_replayed_ignored(
    api: Api, managed_broker: ManagedBroker, settings: Settings, redis: Redis
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    topic = f"devices/{device.id}/twin/reported"
    async with device_client(managed_broker, device) as client:
        await client.publish(topic, b'{"old": 1}', qos=1, retain=True)
    try:
        async with (
            running_worker(twin_worker_settings(settings), redis) as worker,
            device_client(managed_broker, device) as client,
        ):
            await client.publish(topic, b'{"new": 1}', qos=1)

            async def applied() -> bool:
                return "new" in (await twin(api, user, device.id))["reported"]

            await eventually(applied, what="the live report")
            assert worker.stats.dropped_count("twin_retained") == 1
        assert (await twin(api, user, device.id))["reported"] == {"new": 1}
    finally:
        async with device_client(managed_broker, device) as client:
            await client.publish(topic, b"", qos=1, retain=True)


async def test_twin_get_republishes_current_desired(
    api: Api, managed_broker: ManagedBroker, twin_worker: IngestWorker
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    fresh = await create_device(api, user, name="fresh")
    await update(api, user, device.id, {"interval": 5})
    async with device_client(managed_broker, device) as client:
        await client.subscribe(f"devices/{device.id}/twin/desired", qos=1)
        retained = await next_message(client)
        assert retained.retain and desired_of(retained)["version"] == 1
        await client.publish(f"devices/{device.id}/twin/get", b"", qos=1)
        again = await next_message(client)
        # Sent by the worker on its own connection, QoS 1, as the API sent it.
        assert again.qos == 1
        assert desired_of(again) == {"version": 1, "desired": {"interval": 5}}
    # A device nobody set anything for gets the empty document at version 0.
    async with device_client(managed_broker, fresh) as client:
        await client.subscribe(f"devices/{fresh.id}/twin/desired", qos=1)
        await client.publish(f"devices/{fresh.id}/twin/get", b"{}", qos=1)
        assert desired_of(await next_message(client)) == {"version": 0, "desired": {}}


async def test_device_cannot_report_or_get_for_another(
    api: Api, managed_broker: ManagedBroker, twin_worker: IngestWorker
) -> None:
    owner = await register(api)
    attacker_owner = await register(api)
    victim = await create_device(api, owner, name="victim")
    attacker = await create_device(api, attacker_owner, name="attacker")
    await update(api, owner, victim.id, {"interval": 5})
    async with (
        device_client(managed_broker, attacker) as client,
        device_client(managed_broker, victim) as victim_client,
    ):
        # The victim's own desired topic is not the attacker's to read.
        reply = await client.subscribe(f"devices/{victim.id}/twin/desired", qos=1)
        assert all(code.is_failure for code in reply)  # type: ignore[union-attr]
        await victim_client.subscribe(f"devices/{victim.id}/twin/desired", qos=1)
        assert desired_of(await next_message(victim_client))["version"] == 1
        # Forged report and get for the victim, then the attacker's own report.
        await client.publish(f"devices/{victim.id}/twin/reported", b'{"interval": 99}', qos=1)
        await client.publish(f"devices/{victim.id}/twin/get", b"", qos=1)
        await client.publish(f"devices/{attacker.id}/twin/reported", b'{"mine": 1}', qos=1)

        async def own_applied() -> bool:
            return "mine" in (await twin(api, attacker_owner, attacker.id))["reported"]

        await eventually(own_applied, what="the attacker's own report")
        # The forged ones went first: the broker dropped them, nothing reached the victim.
        assert (await twin(api, owner, victim.id))["reported"] == {}
        try:
            extra = await next_message(victim_client, timeout=0.5)
        except TimeoutError:
            extra = None
        assert extra is None, "a forged twin/get made the platform answer the victim"
