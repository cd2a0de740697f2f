"""sendCommand / commands / cancelCommand end to end: API, broker, device, worker, MongoDB."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from ingest.worker import IngestWorker
from tests.brokers import ManagedBroker
from tests.client import Api
from tests.contract import op
from tests.factories import create_device, register
from tests.integration.device_commands.conftest import (
    answer,
    command_state,
    commands,
    eventually,
    nothing_received,
    online_device,
    received,
    send,
)


async def test_send_command_online_device_receives_and_succeeds(
    api: Api, managed_broker: ManagedBroker, command_worker: IngestWorker
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    async with online_device(managed_broker, device) as client:
        sent = await send(api, user, device.id, "setInterval", params={"seconds": 5})
        assert sent["state"] == "SENT"
        assert (sent["deviceId"], sent["name"], sent["params"]) == (
            device.id,
            "setInterval",
            {"seconds": 5},
        )
        created = datetime.fromisoformat(sent["createdAt"])
        assert datetime.fromisoformat(sent["expiresAt"]) - created == timedelta(seconds=3600)
        [got] = await received(client, 1)
        assert got == {
            "topic": f"devices/{device.id}/commands/{sent['id']}",
            "id": sent["id"],
            "name": "setInterval",
            "params": {"seconds": 5},
            "expiresAt": got["expiresAt"],
        }
        assert datetime.fromisoformat(got["expiresAt"]) == datetime.fromisoformat(sent["expiresAt"])
        await answer(client, device.id, sent["id"], {"ok": True, "result": {"interval": 5}})
        await eventually(
            lambda: command_state(api, user, device.id, sent["id"]), lambda s: s == "SUCCEEDED"
        )
    [node] = await commands(api, user, device.id)
    assert node["result"] == {"interval": 5}
    assert node["error"] is None
    assert node["sentAt"] is not None and node["completedAt"] is not None


async def test_send_command_device_failure_stored_failed(
    api: Api, managed_broker: ManagedBroker, command_worker: IngestWorker
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    async with online_device(managed_broker, device) as client:
        sent = await send(api, user, device.id, "selfDestruct")
        await received(client, 1)
        await answer(client, device.id, sent["id"], {"ok": False, "error": "unknown command"})
        await eventually(
            lambda: command_state(api, user, device.id, sent["id"]), lambda s: s == "FAILED"
        )
    [node] = await commands(api, user, device.id)
    assert (node["error"], node["result"]) == ("unknown command", None)


async def test_send_command_offline_device_queued_then_sent_in_order_on_connect(
    api: Api, managed_broker: ManagedBroker, command_worker: IngestWorker
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    queued = [await send(api, user, device.id, "step", params={"n": n}) for n in range(5)]
    assert {c["state"] for c in queued} == {"QUEUED"}
    async with online_device(managed_broker, device, wait=False) as client:
        got = await received(client, 5)
        assert [c["id"] for c in got] == [c["id"] for c in queued]
        assert [c["params"] for c in got] == [{"n": n} for n in range(5)]
        await nothing_received(client, 1.0)  # each exactly once
    states = await commands(api, user, device.id, state="SENT")
    assert len(states) == 5


async def test_cancel_command_queued_never_sent_then_conflict(
    api: Api, managed_broker: ManagedBroker, command_worker: IngestWorker
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    keep = await send(api, user, device.id, "keep")
    drop = await send(api, user, device.id, "drop")
    result = await api.execute(op("CancelCommand"), {"id": drop["id"]}, token=user.access_token)
    assert result.data["cancelCommand"] == {"id": drop["id"], "state": "CANCELLED"}
    again = await api.execute(op("CancelCommand"), {"id": drop["id"]}, token=user.access_token)
    assert again.code == "CONFLICT"
    async with online_device(managed_broker, device, wait=False) as client:
        [got] = await received(client, 1)
        assert got["id"] == keep["id"]
        await nothing_received(client, 1.0)
    cancelled = await commands(api, user, device.id, state="CANCELLED")
    assert [c["id"] for c in cancelled] == [drop["id"]]
    assert cancelled[0]["completedAt"] is not None


async def test_cancel_command_sent_then_late_answer_dropped(
    api: Api, managed_broker: ManagedBroker, command_worker: IngestWorker
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    async with online_device(managed_broker, device) as client:
        sent = await send(api, user, device.id)
        await received(client, 1)
        result = await api.execute(op("CancelCommand"), {"id": sent["id"]}, token=user.access_token)
        assert result.data["cancelCommand"]["state"] == "CANCELLED"
        await answer(client, device.id, sent["id"], {"ok": True, "result": None})
        await eventually(
            lambda: asyncio.sleep(0, command_worker.stats.dropped_count("command_not_sent")),
            lambda n: n == 1,
        )
    assert await command_state(api, user, device.id, sent["id"]) == "CANCELLED"


async def test_expire_queued_command_never_sent(
    api: Api, managed_broker: ManagedBroker, command_worker: IngestWorker
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    short = await send(api, user, device.id, "short", timeoutSeconds=1)
    await eventually(
        lambda: command_state(api, user, device.id, short["id"]),
        lambda s: s == "EXPIRED",
        timeout=10,
    )
    async with online_device(managed_broker, device) as client:
        await nothing_received(client, 1.0)


async def test_expire_sent_command_without_answer(
    api: Api, managed_broker: ManagedBroker, command_worker: IngestWorker
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    async with online_device(managed_broker, device) as client:
        sent = await send(api, user, device.id, timeoutSeconds=1)
        assert sent["state"] == "SENT"
        await received(client, 1)
        await eventually(
            lambda: command_state(api, user, device.id, sent["id"]),
            lambda s: s == "EXPIRED",
            timeout=10,
        )
        await answer(client, device.id, sent["id"], {"ok": True})
        await eventually(
            lambda: asyncio.sleep(0, command_worker.stats.dropped_count("command_not_sent")),
            lambda n: n == 1,
        )
    assert await command_state(api, user, device.id, sent["id"]) == "EXPIRED"


async def test_send_command_bad_input_refused(api: Api) -> None:
    user = await register(api)
    device = await create_device(api, user)
    cases = [
        {"name": "reboot", "timeoutSeconds": 7 * 24 * 3600 + 1},
        {"name": "reboot", "timeoutSeconds": 0},
        {"name": "reboot", "params": {"blob": "x" * 9000}},  # COMMAND_PARAMS_MAX_BYTES 8192
        {"name": ""},
        {"name": "has space"},
        {"name": "x" * 65},
        {"name": "reboot", "deviceId": "not-an-id"},
    ]
    for variables in cases:
        result = await api.execute(
            op("SendCommand"), {"deviceId": device.id, **variables}, token=user.access_token
        )
        assert result.code == "BAD_USER_INPUT", variables
    assert await commands(api, user, device.id) == []
    longest = await send(api, user, device.id, timeoutSeconds=7 * 24 * 3600)
    created = datetime.fromisoformat(longest["createdAt"])
    assert datetime.fromisoformat(longest["expiresAt"]) - created == timedelta(days=7)


async def test_list_commands_newest_first_paginated_and_filtered(api: Api) -> None:
    user = await register(api)
    device = await create_device(api, user)
    sent = [await send(api, user, device.id, f"c{n}") for n in range(3)]
    await api.execute(op("CancelCommand"), {"id": sent[1]["id"]}, token=user.access_token)
    first = await api.execute(
        op("Commands"), {"deviceId": device.id, "first": 2}, token=user.access_token
    )
    page = first.data["commands"]
    assert [e["node"]["name"] for e in page["edges"]] == ["c2", "c1"]
    assert page["pageInfo"]["hasNextPage"] is True
    rest = await commands(api, user, device.id, after=page["pageInfo"]["endCursor"])
    assert [n["name"] for n in rest] == ["c0"]
    queued = await commands(api, user, device.id, state="QUEUED")
    assert [n["name"] for n in queued] == ["c2", "c0"]
