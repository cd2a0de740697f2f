"""Webhooks against a real local HTTP server: signed payloads, retries, a hung receiver,
the outbox bound, the SSRF guard, and the webhook settings through the API."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import pytest
import uvicorn
from pydantic import SecretStr
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.settings import Settings
from ingest.worker import IngestWorker
from models.alerts import NotificationWebhook
from services.webhooks import refused_address, sign, signing_key, webhook_secret
from tests.client import Api
from tests.factories import Session, create_device, register
from tests.integration.alerts.conftest import alerts_of, eventually, rule_applied, send, settled
from tests.integration.alerts.test_evaluation import threshold_rule
from tests.integration.ingest.conftest import start_worker, stop_worker
from tests.net import free_port

SET = """mutation Set($url: String!) { setNotificationWebhook(url: $url) {
  webhook { url createdAt } secret } }"""
GET = "query Hook { notificationWebhook { url createdAt } }"
REMOVE = "mutation Remove { removeNotificationWebhook }"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """What the test's HTTP server got, and how it answers: `statuses` in turn (the last
    one repeats), or never while `hang` is set."""

    url: str
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=lambda: [200])
    hang: bool = False
    hanging: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    """A real HTTP server on localhost, started for one test."""
    port = free_port()
    state = Receiver(url=f"http://localhost:{port}/hooks/alerts")

    async def hook(request: Request) -> Response:
        body = await request.body()
        state.requests.append(Received(dict(request.headers), body))
        if state.hang:
            state.hanging += 1
            await state.release.wait()
        index = min(len(state.requests), len(state.statuses)) - 1
        return Response(status_code=state.statuses[index])

    app = Starlette(routes=[Route("/hooks/alerts", hook, methods=["POST"])])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield state
    finally:
        state.release.set()
        server.should_exit = True
        await task


async def set_webhook(api: Api, session: Session, url: str) -> str:
    result = await api.execute(SET, {"url": url}, token=session.access_token)
    payload = result.data["setNotificationWebhook"]
    assert payload["webhook"]["url"] == url
    secret: str = payload["secret"]
    return secret


def verify(secret: str, received: Received) -> dict[str, Any]:
    """Check the signature as a receiver would; the decoded payload."""
    timestamp = received.headers["x-iot-timestamp"]
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + received.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(received.headers["x-iot-signature"], f"sha256={expected}")
    assert received.headers["content-type"] == "application/json"
    payload: dict[str, Any] = json.loads(received.body)
    assert payload["deliveryId"] == received.headers["x-iot-delivery"]
    return payload


async def raise_one(
    api: Api, session: Session, worker: IngestWorker, publisher: aiomqtt.Client, value: float
) -> str:
    """A device with a max-30 rule that is sent `value`; its id."""
    device = await create_device(api, session)
    rule = await threshold_rule(api, session, device.id, max=30.0)
    await rule_applied(worker, device.id, rule["id"])
    await send(publisher, device.id, "temp", [value])
    return device.id


async def test_post_signed_alert_to_webhook(
    api: Api, worker: IngestWorker, publisher: aiomqtt.Client
) -> None:
    user = await register(api)
    async with receiver() as hook:
        secret = await set_webhook(api, user, hook.url)
        device_id = await raise_one(api, user, worker, publisher, 31.5)
        await eventually(lambda: _some(hook.requests), what="a webhook request")
        await settled(worker, device_id, 1)
        [alert] = await alerts_of(device_id)
        [request] = hook.requests
    payload = verify(secret, request)
    assert payload["event"] == "alert.raised"
    assert payload["alert"] == {
        "id": str(alert.id),
        "deviceId": device_id,
        "ruleId": str(alert.rule_id),
        "kind": "THRESHOLD",
        "metric": "temp",
        "value": 31.5,
        "message": "temp = 31.5, above max 30",
        "severity": "WARNING",
        "state": "ACTIVE",
        "raisedAt": alert.raised_at.isoformat(),
    }
    assert worker.stats.sample("ingest_webhook_deliveries_total", {"outcome": "delivered"}) == 1
    # A wrong secret does not verify.
    with pytest.raises(AssertionError):
        verify(secret + "x", request)


async def _some(items: list[Any], count: int = 1) -> bool:
    return len(items) >= count


async def test_retry_failing_webhook_until_delivered(
    api: Api, worker: IngestWorker, publisher: aiomqtt.Client
) -> None:
    user = await register(api)
    async with receiver() as hook:
        hook.statuses = [500, 503, 204]
        secret = await set_webhook(api, user, hook.url)
        await raise_one(api, user, worker, publisher, 40.0)

        async def delivered() -> bool:
            outcome = {"outcome": "delivered"}
            return worker.stats.sample("ingest_webhook_deliveries_total", outcome) == 1

        await eventually(delivered, what="the third attempt delivered")
        requests = list(hook.requests)
    assert len(requests) == 3
    payloads = [verify(secret, r) for r in requests]
    assert len({p["deliveryId"] for p in payloads}) == 1  # one delivery, three attempts
    assert len({p["alert"]["id"] for p in payloads}) == 1
    assert worker.stats.sample("ingest_webhook_deliveries_total", {"outcome": "failed"}) == 2


async def test_give_up_webhook_after_max_attempts(
    api: Api, alert_settings: Settings, publisher: aiomqtt.Client, redis: Redis
) -> None:
    user = await register(api)
    running, task = await start_worker(
        alert_settings.model_copy(update={"webhook_max_attempts": 3}), redis
    )
    try:
        await asyncio.wait_for(running.alerts.loaded.wait(), 10)
        async with receiver() as hook:
            hook.statuses = [500]
            await set_webhook(api, user, hook.url)
            await raise_one(api, user, running, publisher, 40.0)

            async def exhausted() -> bool:
                outcome = {"outcome": "exhausted"}
                return running.stats.sample("ingest_webhook_deliveries_total", outcome) == 1

            await eventually(exhausted, what="the delivery given up")
            assert len(hook.requests) == 3
    finally:
        await stop_worker(task)


async def test_never_slow_ingest_on_hung_webhook(
    api: Api, alert_settings: Settings, publisher: aiomqtt.Client, redis: Redis
) -> None:
    user = await register(api)
    hung_settings = alert_settings.model_copy(
        # One owner here: its share of the request slots must cover the two held open.
        update={
            "webhook_timeout_seconds": 120,
            "webhook_outbox_size": 2,
            "webhook_concurrency_per_owner": 2,
        }
    )
    running, task = await start_worker(hung_settings, redis)
    try:
        await asyncio.wait_for(running.alerts.loaded.wait(), 10)
        async with receiver() as hook:
            hook.hang = True
            await set_webhook(api, user, hook.url)
            devices = [await raise_one(api, user, running, publisher, 31.0 + i) for i in range(4)]
            # Ingest and alerting go on while the receiver holds two requests open and
            # the two other deliveries find the outbox full.
            for device_id in devices:
                await send(publisher, device_id, "temp", [35.0, 45.0], step=60)
            for device_id in devices:
                await settled(running, device_id, 3)
                assert len(await alerts_of(device_id)) == 1
            assert hook.hanging == 2
            stats = running.stats
            assert stats.sample("ingest_webhook_deliveries_total", {"outcome": "dropped"}) == 2
            assert stats.sample("ingest_webhook_deliveries_total", {"outcome": "delivered"}) == 0
            assert running.alerts.webhooks.pending == 2
    finally:
        await stop_worker(task)


async def test_refuse_webhook_to_private_address_at_delivery(
    api: Api, alert_settings: Settings, publisher: aiomqtt.Client, redis: Redis
) -> None:
    user = await register(api)
    guarded = alert_settings.model_copy(update={"webhook_allow_private_networks": False})
    running, task = await start_worker(guarded, redis)
    try:
        await asyncio.wait_for(running.alerts.loaded.wait(), 10)
        async with receiver() as hook:
            # "localhost" passes the API's check (not an IP literal); it resolves to loopback.
            await set_webhook(api, user, hook.url)
            device_id = await raise_one(api, user, running, publisher, 40.0)

            async def blocked() -> bool:
                outcome = {"outcome": "blocked"}
                return running.stats.sample("ingest_webhook_deliveries_total", outcome) == 1

            await eventually(blocked, what="the delivery refused")
            assert hook.requests == []
            assert len(await alerts_of(device_id)) == 1
    finally:
        await stop_worker(task)


# ---------------------------------------------------------------- settings


async def test_set_show_replace_and_remove_webhook(api: Api) -> None:
    user = await register(api)
    assert (await api.execute(GET, {}, token=user.access_token)).data == {
        "notificationWebhook": None
    }
    first = await set_webhook(api, user, "https://hooks.example.com/a?token=x")
    shown = await api.execute(GET, {}, token=user.access_token)
    assert shown.data["notificationWebhook"]["url"] == "https://hooks.example.com/a?token=x"
    assert "secret" not in json.dumps(shown.body)
    second = await set_webhook(api, user, "https://hooks.example.com/b")
    assert first.startswith("whsec_") and second.startswith("whsec_")
    assert first != second  # a new secret each time
    stored = await NotificationWebhook.find_one({})
    assert stored is not None
    assert first not in stored.model_dump_json() and second not in stored.model_dump_json()
    removed = await api.execute(REMOVE, {}, token=user.access_token)
    assert removed.data == {"removeNotificationWebhook": True}
    again = await api.execute(REMOVE, {}, token=user.access_token)
    assert again.data == {"removeNotificationWebhook": False}


@pytest.mark.parametrize(
    "url",
    [
        "",
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "https://user:pass@example.com/hook",
        "http://127.0.0.1:8080/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://10.1.2.3/hook",
        "https:///nohost",
        "https://example.com:99999/",
    ],
)
async def test_refuse_bad_webhook_url(api: Api, url: str) -> None:
    user = await register(api)
    result = await api.execute(SET, {"url": url}, token=user.access_token)
    assert result.code == "BAD_USER_INPUT"
    assert result.message.startswith("url:")
    assert await NotificationWebhook.find_all().count() == 0


async def test_keep_webhooks_personal(api: Api) -> None:
    a = await register(api)
    b = await register(api)
    await set_webhook(api, a, "https://hooks.example.com/a")
    assert (await api.execute(GET, {}, token=b.access_token)).data == {"notificationWebhook": None}
    assert (await api.execute(REMOVE, {}, token=b.access_token)).data == {
        "removeNotificationWebhook": False
    }
    assert await NotificationWebhook.find_all().count() == 1
    assert (await api.execute(SET, {"url": "https://x.example.com"})).code == "UNAUTHENTICATED"


# ---------------------------------------------------------------- signing and addresses


def test_derive_webhook_secret_per_user_and_nonce(settings: Settings) -> None:
    secret = webhook_secret(settings, "user-1", "nonce-a")
    assert secret == webhook_secret(settings, "user-1", "nonce-a")
    assert secret != webhook_secret(settings, "user-2", "nonce-a")
    assert secret != webhook_secret(settings, "user-1", "nonce-b")
    keyed = settings.model_copy(update={"webhook_signing_key": SecretStr("k" * 40)})
    assert webhook_secret(keyed, "user-1", "nonce-a") != secret
    # The fallback key is derived, never the device credential key itself.
    assert signing_key(settings) != settings.device_credential_key.get_secret_value().encode()


def test_sign_over_timestamp_and_body() -> None:
    signature = sign("whsec_x", 1700000000, b'{"a":1}')
    expected = hmac.new(b"whsec_x", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert signature == f"sha256={expected}"
    assert sign("whsec_x", 1700000001, b'{"a":1}') != signature


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("127.0.0.1", True),
        ("10.0.0.8", True),
        ("172.16.5.4", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),
        ("100.64.0.1", True),
        ("0.0.0.0", True),  # noqa: S104 - an address refused, not bound
        ("224.0.0.1", True),
        ("::1", True),
        ("fe80::1", True),
        ("fd00::1", True),
        ("::ffff:127.0.0.1", True),
        ("93.184.216.34", False),
        ("2606:4700:4700::1111", False),
    ],
)
def test_refuse_non_public_addresses(address: str, refused: bool) -> None:
    assert refused_address(address) is refused
