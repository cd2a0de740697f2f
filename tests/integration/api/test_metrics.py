"""GET /metrics on the real API: operations by name and code, WebSocket and live-event gauges."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from websockets.exceptions import ConnectionClosed

from core.events import device_channel
from core.settings import Settings
from graph.metrics import ANONYMOUS, OTHER, UNKNOWN, ApiMetrics
from tests.client import Api
from tests.contract import op
from tests.factories import create_device, register, unique_email
from tests.integration.graph.test_subscriptions import client, publish, reading_event
from tests.integration.live import wait_numsub

type Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(api_server: str) -> Samples:
    """Every sample of GET /metrics, by (name, labels)."""
    async with httpx.AsyncClient(base_url=api_server) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def wait_for(
    api_server: str, check: Callable[[Samples], bool], timeout: float = 5.0
) -> Samples:
    """Scrape until `check` holds; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while not check(samples := await scrape(api_server)):
        if time.monotonic() > deadline:
            raise AssertionError("metrics did not reach the expected values")
        await asyncio.sleep(0.02)
    return samples


def operations(samples: Samples, operation: str, type: str, code: str) -> float:
    return value(samples, "graphql_operations_total", operation=operation, type=type, code=code)


def latency_count(samples: Samples, operation: str, type: str, code: str | None = None) -> float:
    """Observations of one operation's latency, of one error code or of all."""
    wanted = {("operation", operation), ("type", type)} | ({("code", code)} if code else set())
    return sum(
        count
        for (name, labels), count in samples.items()
        if name == "graphql_operation_seconds_count" and wanted <= labels
    )


async def test_count_graphql_operations_metrics_by_name_and_code(api: Api, api_server: str) -> None:
    before = await scrape(api_server)
    session = await register(api)
    await register(api)
    assert (await api.execute(op("Me"), token=session.access_token)).data["me"]
    assert (await api.execute(op("Me"))).code == "UNAUTHENTICATED"
    after = await scrape(api_server)

    def increase(name: str, type: str, code: str) -> float:
        return operations(after, name, type, code) - operations(before, name, type, code)

    assert increase("Register", "mutation", "OK") == 2
    assert increase("Me", "query", "OK") == 1
    assert increase("Me", "query", "UNAUTHENTICATED") == 1
    assert increase("Register", "mutation", "UNAUTHENTICATED") == 0
    assert (
        latency_count(after, "Register", "mutation") - latency_count(before, "Register", "mutation")
        == 2
    )
    assert latency_count(after, "Me", "query") - latency_count(before, "Me", "query") == 2
    # The latency histogram is split by error code too.
    for code in ("OK", "UNAUTHENTICATED"):
        assert (
            latency_count(after, "Me", "query", code) - latency_count(before, "Me", "query", code)
            == 1
        )


async def test_count_graphql_operations_metrics_unnamed_and_unparsable(
    api: Api, api_server: str
) -> None:
    before = await scrape(api_server)
    assert (await api.execute("{ __typename }")).data == {"__typename": "Query"}
    assert (await api.execute("{ me { id")).code == "BAD_USER_INPUT"
    after = await scrape(api_server)
    assert (
        operations(after, ANONYMOUS, "query", "OK") - operations(before, ANONYMOUS, "query", "OK")
        == 1
    )
    assert (
        operations(after, UNKNOWN, UNKNOWN, "BAD_USER_INPUT")
        - operations(before, UNKNOWN, UNKNOWN, "BAD_USER_INPUT")
        == 1
    )


async def test_count_graphql_operations_metrics_long_name_cut(api: Api, api_server: str) -> None:
    name = "Q" + "x" * 100
    before = await scrape(api_server)
    await api.execute(f"query {name} {{ __typename }}")
    after = await scrape(api_server)
    cut = name[:64]
    assert operations(after, cut, "query", "OK") - operations(before, cut, "query", "OK") == 1
    assert operations(after, name, "query", "OK") == 0


def test_label_operation_names_bounded() -> None:
    metrics = ApiMetrics(max_operation_names=2)
    assert [metrics.operation_label(name) for name in ("A", "B", "C", "A", None)] == [
        "A",
        "B",
        OTHER,
        "A",
        ANONYMOUS,
    ]


async def test_track_websocket_subscription_metrics_open_and_close(
    api: Api, api_server: str, redis: Redis
) -> None:
    session = await register(api, unique_email("metrics"))
    device = await create_device(api, session)
    channel = device_channel("readings", device.id)
    before = await scrape(api_server)
    connections = value(before, "websocket_connections")
    active = value(before, "graphql_subscriptions_active")
    delivered = value(before, "subscription_events_delivered_total")

    async with client(api_server, session) as ws:
        await ws.subscribe("1", op("ReadingAdded"), {"deviceId": device.id})
        await wait_numsub(redis, channel, 1)
        during = await wait_for(
            api_server,
            lambda s: value(s, "graphql_subscriptions_active") == active + 1,
        )
        assert value(during, "websocket_connections") == connections + 1
        await publish(redis, reading_event(device.id, session.user_id))
        await publish(redis, reading_event(device.id, session.user_id, 30.0))
        await ws.next_data()
        await ws.next_data()
        during = await scrape(api_server)
        assert value(during, "subscription_events_delivered_total") == delivered + 2

    after = await wait_for(
        api_server,
        lambda s: (
            value(s, "websocket_connections") == connections
            and value(s, "graphql_subscriptions_active") == active
        ),
    )
    # The subscription, counted when it ended.
    assert operations(after, "ReadingAdded", "subscription", "OK") == (
        operations(before, "ReadingAdded", "subscription", "OK") + 1
    )
    assert latency_count(after, "ReadingAdded", "subscription") == 0


async def test_count_subscription_events_dropped_metrics_slow_subscriber(
    api: Api, api_server: str, redis: Redis, settings: Settings
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    channel = device_channel("readings", device.id)
    before = await scrape(api_server)
    # A client that stops reading (as in tests/integration/graph/test_subscriptions.py).
    address = urlsplit(api_server)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((address.hostname, address.port))
    async with client(api_server, session, sock=sock, max_queue=1) as ws:
        await ws.subscribe("1", op("ReadingAdded"), {"deviceId": device.id})
        await wait_numsub(redis, channel, 1)
        payload = reading_event(device.id, session.user_id).encode()
        async with asyncio.timeout(60):
            while (await redis.pubsub_numsub(channel))[0][1] > 0:
                async with redis.pipeline(transaction=False) as pipe:
                    for _ in range(500):
                        pipe.publish(channel, payload)
                    await pipe.execute()
        with pytest.raises(ConnectionClosed):
            while True:
                await ws.ws.recv()
    after = await scrape(api_server)
    dropped = value(after, "subscription_events_dropped_total") - value(
        before, "subscription_events_dropped_total"
    )
    # The full buffer, and the event that did not fit.
    assert dropped == settings.subscription_buffer + 1
