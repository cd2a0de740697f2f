"""Device answers the worker refuses: each a counted drop, nothing else lost or changed."""

from __future__ import annotations

import asyncio
import json

import pytest

from ingest.payloads import Rejected, parse_command_result
from ingest.worker import IngestWorker
from tests.brokers import ManagedBroker
from tests.client import Api
from tests.factories import create_device, register
from tests.integration.device_commands.conftest import (
    answer,
    command_state,
    commands,
    eventually,
    online_device,
    received,
    send,
)

TOPIC = "devices/6b04424c61a616851779946e/commands/6b04424c61a616851779946f/result"


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[]",
        b'{"result": 1}',
        b'{"ok": "yes"}',
        b'{"ok": true, "error": "both"}',
        b'{"ok": false}',
        b'{"ok": false, "error": 42}',
        b'{"ok": false, "error": "x", "result": 1}',
        b'{"ok": true, "result": NaN}',
        b'{"ok": true, "result": 123456789012345678901234567890}',
        b'{"ok": true, "result": ' + b"[" * 300 + b"]" * 300 + b"}",
    ],
)
def test_parse_command_result_bad_shape_rejected(payload: bytes) -> None:
    with pytest.raises(Rejected) as caught:
        parse_command_result(TOPIC, payload)
    assert caught.value.reason == "bad_command_result"


def test_parse_command_result_over_16_kib_too_large() -> None:
    payload = json.dumps({"ok": True, "result": "x" * (16 * 1024)}).encode()
    with pytest.raises(Rejected) as caught:
        parse_command_result(TOPIC, payload)
    assert caught.value.reason == "too_large"
    fits = json.dumps({"ok": True, "result": "x" * (16 * 1024 - 30)}).encode()
    assert len(fits) <= 16 * 1024
    assert parse_command_result(TOPIC, fits).ok


def test_parse_command_result_contract_shapes() -> None:
    ok = parse_command_result(TOPIC, b'{"ok": true, "result": {"a": [1, null]}}')
    assert (ok.command_id, ok.ok, ok.result_json, ok.error) == (
        "6b04424c61a616851779946f",
        True,
        '{"a":[1,null]}',
        None,
    )
    assert parse_command_result(TOPIC, b'{"ok": true}').result_json == "null"
    failed = parse_command_result(TOPIC, b'{"ok": false, "error": "bad\\u0000 thing"}')
    assert (failed.ok, failed.result_json, failed.error) == (False, None, "bad thing")


async def test_drop_bad_answers_counted_command_untouched(
    api: Api, managed_broker: ManagedBroker, command_worker: IngestWorker
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    stats = command_worker.stats
    async with online_device(managed_broker, device) as mqtt:
        command = await send(api, user, device.id)
        await received(mqtt, 1)
        await answer(mqtt, device.id, command["id"], b"{broken")
        await answer(mqtt, device.id, command["id"], b'{"ok": true, "result": "' + b"x" * 17000)
        await answer(mqtt, device.id, "6b04424c61a616851779946f", {"ok": True})  # no such
        await answer(mqtt, device.id, "not-an-object-id", {"ok": True})
        queued = await send(api, user, device.id, timeoutSeconds=3600)
        await received(mqtt, 1)  # online: sent at once
        await eventually(
            lambda: asyncio.sleep(0, stats.dropped_count("command_unknown")), lambda n: n == 2
        )
        assert stats.dropped_count("bad_command_result") == 1
        assert stats.dropped_count("too_large") == 1
        assert await command_state(api, user, device.id, command["id"]) == "SENT"
        # The stream goes on: a good answer, then the same answer again (not SENT any more).
        await answer(mqtt, device.id, command["id"], {"ok": True, "result": "fine"})
        await answer(mqtt, device.id, command["id"], {"ok": False, "error": "changed my mind"})
        await eventually(
            lambda: asyncio.sleep(0, stats.dropped_count("command_not_sent")), lambda n: n == 1
        )
    nodes = {node["id"]: node for node in await commands(api, user, device.id)}
    assert (nodes[command["id"]]["state"], nodes[command["id"]]["result"]) == ("SUCCEEDED", "fine")
    assert nodes[queued["id"]]["state"] == "SENT"
