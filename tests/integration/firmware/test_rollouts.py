"""Rollouts with devices driven over MQTT by the test: offers, reports, timeouts,
the failure threshold, cancellation, the live progress subscription."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from firmware.signing import verify_digest
from ingest.worker import IngestWorker
from tests.brokers import ManagedBroker
from tests.client import Api
from tests.contract import op
from tests.factories import admin_and_user, create_device
from tests.integration.firmware.helpers import (
    Identity,
    as_device,
    eventually,
    next_offer,
    report,
    retained_offer,
    rollout,
    rollout_until,
    start,
    states,
    uploaded,
)
from tests.integration.graph.test_subscriptions import client as ws_client

PENDING_STATES = {"PENDING", "DISPATCHED"}


# retained_offer's marker: the bootstrap admin may not publish to device topics.


async def test_start_firmware_update_reaches_offline_device_on_reconnect(
    api: Api,
    api_server: str,
    managed_broker: ManagedBroker,
    ota_worker: IngestWorker,
    device_publisher_identity: Identity,
) -> None:
    admin, _ = await admin_and_user(api)
    device = await create_device(api, admin)
    image = os.urandom(50_000)
    firmware = await uploaded(api, admin, image, version="3.1.0")
    started = await api.execute(
        op("StartFirmwareUpdate"),
        {"firmwareId": firmware["id"], "deviceIds": [device.id]},
        token=admin.access_token,
    )
    update = started.data["startFirmwareUpdate"]
    assert update["state"] == "RUNNING"
    assert update["firmware"] == {"id": firmware["id"], "version": "3.1.0"}
    assert update["devices"] == [
        {"deviceId": device.id, "state": "PENDING", "progress": 0, "error": None}
    ]
    # The device is offline while it is dispatched; the retained offer waits for it.
    await rollout_until(api, admin, update["id"], lambda u: states(u)[device.id] == "DISPATCHED")
    async with ws_client(api_server, admin) as watcher:
        await watcher.subscribe("1", op("FirmwareUpdateProgress"), {"id": update["id"]})
        first = await watcher.next_data("1")  # the snapshot
        assert first["firmwareUpdateProgress"]["state"] == "DISPATCHED"
        async with as_device(managed_broker, device) as client:
            await client.subscribe(f"devices/{device.id}/ota", qos=1)
            offer = await next_offer(client)
            assert offer == {
                "updateId": update["id"],
                "version": "3.1.0",
                "url": f"/firmware/{firmware['id']}/download",
                "size": len(image),
                "sha256": hashlib.sha256(image).hexdigest(),
                "signature": firmware["signature"],
            }
            key = await api.execute(op("FirmwareSigningKey"), token=admin.access_token)
            digest = hashlib.sha256(image).digest()
            assert verify_digest(key.data["firmwareSigningKey"], digest, offer["signature"])
            for state, progress in [
                ("DOWNLOADING", 0),
                ("DOWNLOADING", 50),
                ("VERIFYING", 100),
                ("INSTALLING", 10),
                ("SUCCEEDED", 100),
            ]:
                await report(client, device.id, update["id"], state, progress=progress)
        seen: list[tuple[str, int]] = []
        while True:
            kind, _, payload = await watcher.receive()
            if kind == "complete":
                break
            event = payload["data"]["firmwareUpdateProgress"]
            assert event["deviceId"] == device.id
            seen.append((event["state"], event["progress"]))
    assert seen == [
        ("DOWNLOADING", 0),
        ("DOWNLOADING", 50),
        ("VERIFYING", 100),
        ("INSTALLING", 10),
        ("SUCCEEDED", 100),
    ]
    final = await rollout_until(api, admin, update["id"], lambda u: u["state"] == "SUCCEEDED")
    assert final["devices"][0]["state"] == "SUCCEEDED"
    node = await api.execute(op("Device"), {"id": device.id}, token=admin.access_token)
    assert node.data["device"]["firmwareVersion"] == "3.1.0"
    # Finished: the retained offer is cleared, a device connecting now gets nothing.
    await eventually(
        lambda: retained_offer(managed_broker, device_publisher_identity, device),
        lambda retained: retained is None,
    )


async def test_ingest_ota_progress_drops_bad_reports_and_counts_them(
    api: Api, managed_broker: ManagedBroker, ota_worker: IngestWorker
) -> None:
    admin, _ = await admin_and_user(api)
    member = await create_device(api, admin, name="member")
    stranger = await create_device(api, admin, name="stranger")
    firmware = await uploaded(api, admin, os.urandom(1000))
    update = await start(api, admin, firmware["id"], [member.id])
    await rollout_until(api, admin, update["id"], lambda u: states(u)[member.id] == "DISPATCHED")
    stats = ota_worker.stats
    async with as_device(managed_broker, member) as client:
        await report(client, member.id, update["id"], "INSTALLING", progress=40)
        await rollout_until(
            api, admin, update["id"], lambda u: states(u)[member.id] == "INSTALLING"
        )
        await report(client, member.id, update["id"], "DOWNLOADING", progress=90)  # backwards
        await report(client, member.id, update["id"], "INSTALLING", progress=10)  # backwards
        await report(client, member.id, "f" * 24, "DOWNLOADING")  # unknown update
        for bad in [b"{", b"[]", b'{"updateId": "x", "state": "DOWNLOADING"}',
                    json.dumps({"updateId": update["id"], "state": "DONE"}).encode(),
                    json.dumps({"updateId": update["id"], "state": "FAILED", "progress": 101}).encode()]:  # fmt: skip
            await client.publish(f"devices/{member.id}/ota/progress", bad, qos=1)
    async with as_device(managed_broker, stranger) as client:
        await report(client, stranger.id, update["id"], "SUCCEEDED")  # not in the rollout

    expected = {
        "ota_backwards": 2,
        "ota_unknown_update": 1,
        "ota_wrong_device": 1,
        "bad_ota_progress": 5,
    }

    async def counted() -> dict[str, float]:
        return {reason: stats.dropped_count(reason) for reason in expected}  # type: ignore[arg-type]

    assert await eventually(counted, lambda d: d == expected) == expected
    current = await rollout(api, admin, update["id"])
    assert current["devices"] == [
        {"deviceId": member.id, "state": "INSTALLING", "progress": 40, "error": None}
    ]
    assert current["state"] == "RUNNING"
    node = await api.execute(op("Device"), {"id": stranger.id}, token=admin.access_token)
    assert node.data["device"]["firmwareVersion"] is None


async def test_device_timeout_fails_silent_device_and_clears_its_offer(
    api: Api, managed_broker: ManagedBroker, device_publisher_identity: Identity
) -> None:
    admin, _ = await admin_and_user(api)
    device = await create_device(api, admin)
    firmware = await uploaded(api, admin, os.urandom(1000))
    update = await start(api, admin, firmware["id"], [device.id], deviceTimeoutSeconds=1)
    assert update["deviceTimeoutSeconds"] == 1
    final = await rollout_until(api, admin, update["id"], lambda u: u["state"] == "FAILED")
    assert final["devices"][0]["state"] == "FAILED"
    assert "timed out" in final["devices"][0]["error"]
    await eventually(
        lambda: retained_offer(managed_broker, device_publisher_identity, device),
        lambda retained: retained is None,
    )


async def test_failure_threshold_pauses_rollout_then_cancel_leaves_nothing_pending(
    api: Api, managed_broker: ManagedBroker, ota_worker: IngestWorker
) -> None:
    admin, _ = await admin_and_user(api)
    devices = [await create_device(api, admin, name=f"d{n}") for n in range(4)]
    firmware = await uploaded(api, admin, os.urandom(1000))
    # One device a minute: the first goes at once, the others wait behind it.
    update = await start(
        api,
        admin,
        firmware["id"],
        [d.id for d in devices],
        devicesPerMinute=1,
        maxFailureRate=0.5,
        failureMinDevices=1,
    )
    first = devices[0]
    async with as_device(managed_broker, first) as client:
        await client.subscribe(f"devices/{first.id}/ota", qos=1)
        offer = await next_offer(client)
        await report(client, first.id, offer["updateId"], "DOWNLOADING", progress=0)
        await report(client, first.id, offer["updateId"], "FAILED", error="flash write error")
    paused = await rollout_until(api, admin, update["id"], lambda u: u["state"] == "PAUSED")
    assert states(paused) == {
        first.id: "FAILED",
        **{d.id: "PENDING" for d in devices[1:]},
    }
    assert paused["devices"][0]["error"] == "flash write error"
    cancelled = await api.execute(
        op("CancelFirmwareUpdate"), {"id": update["id"]}, token=admin.access_token
    )
    assert cancelled.data["cancelFirmwareUpdate"] == {"id": update["id"], "state": "CANCELLED"}
    final = await rollout(api, admin, update["id"])
    assert final["state"] == "CANCELLED"
    assert not PENDING_STATES & set(states(final).values())
    assert states(final) == {first.id: "FAILED", **{d.id: "CANCELLED" for d in devices[1:]}}
    again = await api.execute(
        op("CancelFirmwareUpdate"), {"id": update["id"]}, token=admin.access_token
    )
    assert again.data["cancelFirmwareUpdate"]["state"] == "CANCELLED"
    # The devices are free for another rollout once released.
    second = await eventually(
        lambda: api.execute(
            op("StartFirmwareUpdate"),
            {"firmwareId": firmware["id"], "deviceIds": [devices[1].id]},
            token=admin.access_token,
        ),
        lambda result: not result.errors,
    )
    assert second.data["startFirmwareUpdate"]["devices"][0]["state"] == "PENDING"


async def test_cancel_firmware_update_clears_offer_of_dispatched_device(
    api: Api, managed_broker: ManagedBroker, device_publisher_identity: Identity
) -> None:
    admin, _ = await admin_and_user(api)
    device = await create_device(api, admin)
    firmware = await uploaded(api, admin, os.urandom(1000))
    update = await start(api, admin, firmware["id"], [device.id])
    await rollout_until(api, admin, update["id"], lambda u: states(u)[device.id] == "DISPATCHED")
    identity = device_publisher_identity
    assert await retained_offer(managed_broker, identity, device) is not None
    await api.execute(op("CancelFirmwareUpdate"), {"id": update["id"]}, token=admin.access_token)
    final = await rollout(api, admin, update["id"])
    assert states(final) == {device.id: "CANCELLED"}
    await eventually(
        lambda: retained_offer(managed_broker, identity, device), lambda offer: offer is None
    )


async def test_start_firmware_update_refuses_bad_requests(api: Api) -> None:
    admin, user = await admin_and_user(api)
    esp = await create_device(api, admin, type="esp32")
    other = await create_device(api, admin, type="rp2040")
    firmware = await uploaded(api, admin, os.urandom(1000), device_type="esp32")

    async def attempt(session: Any = admin, **variables: Any) -> str:
        values = {"firmwareId": firmware["id"], "deviceIds": [esp.id], **variables}
        result = await api.execute(
            """mutation($input: StartFirmwareUpdateInput!) {
                 startFirmwareUpdate(input: $input) { id } }""",
            {"input": values},
            token=session.access_token,
        )
        return result.code

    assert await attempt(session=user) == "FORBIDDEN"
    assert await attempt(deviceIds=[]) == "BAD_USER_INPUT"
    assert await attempt(deviceIds=["nope"]) == "BAD_USER_INPUT"
    assert await attempt(deviceIds=["0" * 24]) == "NOT_FOUND"
    assert await attempt(deviceIds=[other.id]) == "BAD_USER_INPUT"
    assert await attempt(firmwareId="0" * 24) == "NOT_FOUND"
    assert await attempt(devicesPerMinute=0) == "BAD_USER_INPUT"
    assert await attempt(maxFailureRate=1.5) == "BAD_USER_INPUT"
    started = await start(api, admin, firmware["id"], [esp.id, esp.id])  # listed twice: once
    assert [d["deviceId"] for d in started["devices"]] == [esp.id]
    assert await attempt() == "CONFLICT"  # already in that rollout
    missing = await api.execute(op("FirmwareUpdate"), {"id": "0" * 24}, token=admin.access_token)
    assert missing.code == "NOT_FOUND"
    hidden = await api.execute(op("FirmwareUpdate"), {"id": started["id"]}, token=user.access_token)
    assert hidden.code == "FORBIDDEN"


async def test_subscribe_firmware_update_progress_refused_to_users(
    api: Api, api_server: str
) -> None:
    admin, user = await admin_and_user(api)
    device = await create_device(api, admin)
    firmware = await uploaded(api, admin, os.urandom(1000))
    update = await start(api, admin, firmware["id"], [device.id], devicesPerMinute=1)
    async with ws_client(api_server, user) as watcher:
        await watcher.subscribe("1", op("FirmwareUpdateProgress"), {"id": update["id"]})
        kind, _, payload = await watcher.receive()
    assert kind in {"error", "next"}
    errors = payload if isinstance(payload, list) else payload["errors"]
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    async with ws_client(api_server, admin) as watcher:
        await watcher.subscribe("1", op("FirmwareUpdateProgress"), {"id": "0" * 24})
        kind, _, payload = await watcher.receive()
    errors = payload if isinstance(payload, list) else payload["errors"]
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"
