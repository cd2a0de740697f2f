"""POST /devices/{id}/telemetry on the real stack: stored, streamed, alerted, bounded.

The session API serves it (tests/conftest.py, no per-device rate limit); tests that
need other settings (a rate limit, slow storage, one slot) serve a second API.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from beanie import PydanticObjectId
from redis.asyncio import Redis

from core.events import device_channel
from core.settings import Settings
from ingest.payloads import MAX_PAYLOAD_BYTES
from models.devices import Device
from models.readings import Reading
from tests.client import Api
from tests.contract import op
from tests.factories import CreatedDevice, create_device, register
from tests.integration.accounts.helpers import create_key
from tests.integration.alerts.conftest import eventually
from tests.integration.graph.test_subscriptions import PROTOCOLS, client
from tests.integration.live import wait_numsub
from tests.servers import serve_api, with_settings


async def post(
    url: str,
    device_id: str,
    body: Any,
    *,
    token: str | None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        return await http.post(
            f"/devices/{device_id}/telemetry", content=content, headers=all_headers
        )


async def stored(device_id: str) -> int:
    return await Reading.get_pymongo_collection().count_documents(
        {"device_id": PydanticObjectId(device_id)}
    )


async def metric_sample(url: str, name: str, labels: dict[str, str] | None = None) -> float:
    async with httpx.AsyncClient(base_url=url) as http:
        text = (await http.get("/metrics")).text
    wanted = name + (
        "{" + ",".join(f'{k}="{v}"' for k, v in (labels or {}).items()) + "}" if labels else ""
    )
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def owned_device(api: Api) -> CreatedDevice:
    return await create_device(api, await register(api))


# ---------------------------------------------------------------- accepted and stored


async def test_accept_one_reading_stored_before_202(api: Api, api_server: str) -> None:
    device = await owned_device(api)
    body = {"temperature": 21.5, "humidity": {"value": 40, "unit": "%"}, "note": "ignored"}
    response = await post(api_server, device.id, body, token=device.token)
    assert (response.status_code, response.json()) == (202, {"accepted": 1})
    # Acknowledged write: the reading is in the database when the 202 arrives.
    docs = (
        await Reading.get_pymongo_collection()
        .find({"device_id": PydanticObjectId(device.id)})
        .to_list()
    )
    assert [sorted((v["metric"], v["value"], v["unit"]) for v in d["values"]) for d in docs] == [
        [("humidity", 40.0, "%"), ("temperature", 21.5, None)]
    ]


async def test_accept_array_with_timestamps_readable_through_graphql(
    api: Api, api_server: str
) -> None:
    owner = await register(api)
    device = await create_device(api, owner)
    now = datetime.now(UTC).replace(microsecond=0)
    body = [
        {"t": float(i), "timestamp": (now - timedelta(seconds=10 - i)).isoformat()}
        for i in range(10)
    ]
    response = await post(api_server, device.id, body, token=device.token)
    assert (response.status_code, response.json()) == (202, {"accepted": 10})
    result = await api.execute(
        op("Readings"), {"deviceId": device.id, "first": 20}, token=owner.access_token
    )
    values = sorted(e["node"]["values"][0]["value"] for e in result.data["readings"]["edges"])
    assert values == [float(i) for i in range(10)]


async def test_accept_marks_device_online_and_moves_last_seen(api: Api, api_server: str) -> None:
    owner = await register(api)
    device = await create_device(api, owner)
    assert device.node.get("status", "NEVER_SEEN") == "NEVER_SEEN"
    before = datetime.now(UTC)
    response = await post(api_server, device.id, {"v": 1}, token=device.token)
    assert response.status_code == 202
    stored_device = await Device.get(PydanticObjectId(device.id))
    assert stored_device is not None
    assert stored_device.status == "ONLINE"
    assert stored_device.last_seen is not None
    assert stored_device.last_seen.replace(tzinfo=UTC) >= before.replace(microsecond=0) - timedelta(
        seconds=1
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_publish_reading_added_after_store(
    api: Api, api_server: str, redis: Redis, protocol: str
) -> None:
    owner = await register(api)
    device = await create_device(api, owner)
    async with client(api_server, owner, protocol) as ws:
        await ws.subscribe("1", op("ReadingAdded"), {"deviceId": device.id})
        await wait_numsub(redis, device_channel("readings", device.id), 1)
        response = await post(
            api_server,
            device.id,
            {"temp": 22.5, "ts": 1_748_779_200_000},
            token=device.token,
        )
        assert response.status_code == 202
        data = await ws.next_data()
    assert data == {
        "readingAdded": {
            "deviceId": device.id,
            "timestamp": "2025-06-01T12:00:00+00:00",
            "anomaly": False,
            "values": [{"metric": "temp", "value": 22.5, "unit": None}],
        }
    }


async def test_raise_alert_for_reading_over_rule(api: Api, api_server: str) -> None:
    owner = await register(api)
    device = await create_device(api, owner)
    await api.execute(
        op("CreateAlertRule"),
        {"deviceId": device.id, "metric": "temp", "max": 30.0, "severity": "CRITICAL"},
        token=owner.access_token,
    )
    response = await post(api_server, device.id, {"temp": 45.0}, token=device.token)
    assert response.status_code == 202

    async def raised() -> list[dict[str, Any]]:
        result = await api.execute(op("Alerts"), {"state": "ACTIVE"}, token=owner.access_token)
        return [e["node"] for e in result.data["alerts"]["edges"]]

    alerts = await eventually(raised, timeout=10, what="the alert raised by the HTTP reading")
    assert [(a["deviceId"], a["metric"], a["value"], a["severity"]) for a in alerts] == [
        (device.id, "temp", 45.0, "CRITICAL")
    ]


async def test_store_once_retry_with_same_idempotency_key(api: Api, api_server: str) -> None:
    device = await owned_device(api)
    body = [{"v": 1}, {"v": 2}]
    for _ in range(3):
        response = await post(
            api_server, device.id, body, token=device.token, headers={"Idempotency-Key": "k-1"}
        )
        assert (response.status_code, response.json()) == (202, {"accepted": 2})
    assert await stored(device.id) == 2
    # Another key, or another body under the same key, is another message.
    await post(api_server, device.id, body, token=device.token, headers={"Idempotency-Key": "k-2"})
    await post(
        api_server, device.id, [{"v": 3}], token=device.token, headers={"Idempotency-Key": "k-1"}
    )
    assert await stored(device.id) == 5


async def test_store_twice_without_idempotency_key(api: Api, api_server: str) -> None:
    device = await owned_device(api)
    for _ in range(2):
        assert (await post(api_server, device.id, {"v": 1}, token=device.token)).status_code == 202
    assert await stored(device.id) == 2


# ---------------------------------------------------------------- refused input


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "bad_json"),
        (b'{"t": NaN}', "non_finite"),
        (b"[]", "no_metrics"),
        (b'{"only": "strings"}', "no_metrics"),
        (b'"a string"', "bad_shape"),
        (json.dumps([{"v": i} for i in range(1001)]).encode(), "too_many_readings"),
        (json.dumps({f"m{i}": i for i in range(101)}).encode(), "too_many_metrics"),
        (b'{"bad name!": 1}', "bad_metric_name"),
        (b'{"v": 1, "timestamp": "yesterday"}', "bad_timestamp"),
        (b'{"v": 1, "timestamp": "2999-01-01T00:00:00Z"}', "future_timestamp"),
    ],
)
async def test_refuse_bad_body_400_counted_nothing_stored(
    api: Api, api_server: str, body: bytes, reason: str
) -> None:
    device = await owned_device(api)
    before = await metric_sample(api_server, "ingest_messages_dropped_total", {"reason": reason})
    response = await post(api_server, device.id, body, token=device.token)
    assert (response.status_code, response.json()) == (400, {"error": reason})
    assert await stored(device.id) == 0
    after = await metric_sample(api_server, "ingest_messages_dropped_total", {"reason": reason})
    assert after == before + 1
    # The device goes on: its next valid body is stored.
    assert (await post(api_server, device.id, {"v": 1}, token=device.token)).status_code == 202


async def test_refuse_body_over_payload_limit_413_unparsed(api: Api, api_server: str) -> None:
    device = await owned_device(api)
    body = b'{"v": 1, "pad": "' + b"x" * MAX_PAYLOAD_BYTES + b'"}'
    response = await post(api_server, device.id, body, token=device.token)
    assert response.status_code == 413
    # Chunked (no Content-Length): counted as it arrives.

    async def chunks() -> Any:
        for _ in range(MAX_PAYLOAD_BYTES // 4096 + 2):
            yield b" " * 4096

    async with httpx.AsyncClient(base_url=api_server, timeout=30) as http:
        response = await http.post(
            f"/devices/{device.id}/telemetry",
            content=chunks(),
            headers={"Authorization": f"Bearer {device.token}"},
        )
    assert response.status_code == 413
    assert await stored(device.id) == 0


async def test_refuse_bad_idempotency_key_400(api: Api, api_server: str) -> None:
    device = await owned_device(api)
    response = await post(
        api_server, device.id, {"v": 1}, token=device.token, headers={"Idempotency-Key": "x" * 129}
    )
    assert (response.status_code, response.json()) == (400, {"error": "bad_idempotency_key"})
    assert await stored(device.id) == 0


async def test_refuse_without_device_token_401(api: Api, api_server: str) -> None:
    owner = await register(api)
    device = await create_device(api, owner)
    for token in (None, "not-a-jwt", owner.access_token):  # a user's token is not a device's
        response = await post(api_server, device.id, {"v": 1}, token=token)
        assert response.status_code == 401, token
        assert response.headers["www-authenticate"] == "Bearer"
    assert await stored(device.id) == 0


async def test_refuse_get_405(api_server: str) -> None:
    async with httpx.AsyncClient(base_url=api_server) as http:
        response = await http.get(f"/devices/{'0' * 24}/telemetry")
    assert response.status_code == 405


# ---------------------------------------------------------------- limits


async def test_refuse_device_over_rate_429_retry_after(api: Api, settings: Settings) -> None:
    device = await owned_device(api)
    limited = with_settings(settings, ingest_device_rate_per_second=0.5, ingest_device_burst=2)
    async with serve_api(limited) as url:
        answers = [await post(url, device.id, {"v": i}, token=device.token) for i in range(4)]
        assert [a.status_code for a in answers] == [202, 202, 429, 429]
        assert answers[2].json() == {"error": "rate_limited"}
        assert answers[2].headers["retry-after"] == "2"
        assert (
            await metric_sample(url, "ingest_messages_dropped_total", {"reason": "rate_limited"})
            == 2
        )
    assert await stored(device.id) == 2
    # Another device has its own bucket (the session API has no limit at all).


async def test_refuse_when_storage_too_slow_503_nothing_stored(
    api: Api, settings: Settings
) -> None:
    """Storage slower than the timeout (the store waits 1.5 s for a batch of 1,000): 503
    with Retry-After, and the readings are taken back, never stored later."""
    device = await owned_device(api)
    slow = with_settings(
        settings,
        ingest_batch_size=1000,
        ingest_batch_delay_ms=1500,
        http_ingest_timeout_seconds=0.5,
        http_ingest_concurrency=1,
    )
    async with serve_api(slow) as url:
        first = asyncio.create_task(post(url, device.id, {"v": 1}, token=device.token))
        await asyncio.sleep(0.2)
        # The one slot is taken: refused at once, before its body is read.
        second = await post(url, device.id, {"v": 2}, token=device.token)
        assert (second.status_code, second.json()) == (503, {"error": "overloaded"})
        assert second.headers["retry-after"] == "1"
        answer = await first
        assert (answer.status_code, answer.json()) == (503, {"error": "storage_timeout"})
        assert answer.headers["retry-after"] == "1"
        assert await metric_sample(url, "http_telemetry_responses_total", {"status": "503"}) == 2
        # Withdrawn: not stored once the batch delay has run out either.
        await asyncio.sleep(2)
        assert await stored(device.id) == 0


async def test_shed_new_request_when_queue_older_than_half_timeout(
    api: Api, settings: Settings
) -> None:
    """A queue whose oldest message has waited half the timeout answers new requests
    503 at once (they would only time out), though slots are free."""
    device = await owned_device(api)
    slow = with_settings(
        settings,
        ingest_batch_size=1000,
        ingest_batch_delay_ms=3000,
        http_ingest_timeout_seconds=1.0,
        http_ingest_concurrency=8,
    )
    async with serve_api(slow) as url:
        first = asyncio.create_task(post(url, device.id, {"v": 1}, token=device.token))
        await asyncio.sleep(0.7)
        started = asyncio.get_running_loop().time()
        second = await post(url, device.id, {"v": 2}, token=device.token)
        assert (second.status_code, second.json()) == (503, {"error": "overloaded"})
        assert asyncio.get_running_loop().time() - started < 0.5
        assert (await first).json() == {"error": "storage_timeout"}
        await asyncio.sleep(2.5)  # past the batch delay: neither was stored
        assert await stored(device.id) == 0


async def test_refuse_body_slower_than_timeout_408(api: Api, settings: Settings) -> None:
    """A sender that stops halfway holds its place no longer than the timeout."""
    device = await owned_device(api)
    body = b'[{"v": 1}, {"v": 2}]'
    quick = with_settings(settings, http_ingest_timeout_seconds=0.5)
    async with serve_api(quick) as url:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(
            f"POST /devices/{device.id}/telemetry HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Authorization: Bearer {device.token}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body[:10]
        )
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.read()  # the API answers and closes
        writer.close()
    head, _, content = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert json.loads(content) == {"error": "body_timeout"}
    assert await stored(device.id) == 0


# ---------------------------------------------------------------- API keys (INGEST)


async def test_accept_ingest_api_key_for_owners_device(api: Api, api_server: str) -> None:
    session = await register(api)
    device = await create_device(api, session)
    key, _ = await create_key(api, session, ["INGEST"])
    response = await post(api_server, device.id, {"t": 1.5}, token=key)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 1}
    assert await stored(device.id) == 1


async def test_refuse_api_key_without_ingest_scope_stores_nothing(
    api: Api, api_server: str
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    key, _ = await create_key(api, session, ["READ", "WRITE"])
    response = await post(api_server, device.id, {"t": 1.5}, token=key)
    assert response.status_code == 403, response.text
    assert await stored(device.id) == 0


async def test_refuse_ingest_api_key_for_other_users_device(api: Api, api_server: str) -> None:
    victim = await owned_device(api)
    attacker = await register(api)
    key, _ = await create_key(api, attacker, ["INGEST"])
    response = await post(api_server, victim.id, {"t": 666}, token=key)
    assert response.status_code == 404, response.text
    assert await stored(victim.id) == 0


async def test_refuse_revoked_ingest_api_key(api: Api, api_server: str) -> None:
    session = await register(api)
    device = await create_device(api, session)
    key, node = await create_key(api, session, ["INGEST"])
    revoked = await api.execute(op("RevokeApiKey"), {"id": node["id"]}, token=session.access_token)
    assert revoked.data == {"revokeApiKey": True}
    response = await post(api_server, device.id, {"t": 1.5}, token=key)
    assert response.status_code == 401, response.text
    assert await stored(device.id) == 0
