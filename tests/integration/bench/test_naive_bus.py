"""The benchmark baseline bus: a Redis connection per subscriber, released on exit."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
from redis.asyncio import Redis

from bench.naive_bus import PerSubscriberRedisBus
from core.settings import Settings
from live.bus import Subscription
from tests.integration.live import numsub, wait_numsub


def channel_name() -> str:
    return f"test-naive:{uuid.uuid4().hex}"


async def take(subscription: Subscription, count: int) -> list[tuple[str, bytes]]:
    async with asyncio.timeout(5):
        return [await anext(subscription) for _ in range(count)]


@pytest.fixture
async def named_redis(settings: Settings) -> AsyncIterator[Redis]:
    """A client whose connections carry a name of their own (CLIENT LIST is server-wide)."""
    client = Redis.from_url(settings.redis_url, client_name=f"test-naive-{uuid.uuid4().hex[:8]}")
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def naive_bus(named_redis: Redis) -> AsyncIterator[PerSubscriberRedisBus]:
    async with PerSubscriberRedisBus(named_redis) as bus:
        yield bus


async def test_fan_out_naive_bus_one_connection_per_subscriber(
    naive_bus: PerSubscriberRedisBus, redis: Redis
) -> None:
    channel, other = channel_name(), channel_name()
    async with AsyncExitStack() as stack:
        subscriptions = [
            await stack.enter_async_context(naive_bus.subscribe(channel)) for _ in range(5)
        ]
        both = await stack.enter_async_context(naive_bus.subscribe(channel, other))
        # The baseline's point: Redis sees every subscriber.
        assert await numsub(redis, channel) == 6
        assert await numsub(redis, other) == 1
        for n in range(3):
            await naive_bus.publish(channel, f"event {n}".encode())
        await naive_bus.publish(other, b"other")
        for subscription in subscriptions:
            assert await take(subscription, 3) == [
                (channel, b"event 0"),
                (channel, b"event 1"),
                (channel, b"event 2"),
            ]
        assert sorted(await take(both, 4)) == sorted(
            [(channel, f"event {n}".encode()) for n in range(3)] + [(other, b"other")]
        )
    await wait_numsub(redis, channel, 0)
    await wait_numsub(redis, other, 0)


async def test_release_naive_bus_connection_on_exit(
    naive_bus: PerSubscriberRedisBus, named_redis: Redis, redis: Redis
) -> None:
    channel = channel_name()
    name = named_redis.get_connection_kwargs()["client_name"]

    async def pubsub_clients() -> int:
        clients = await redis.client_list(_type="pubsub")
        return sum(1 for client in clients if client["name"] == name)

    for _ in range(3):
        async with naive_bus.subscribe(channel), naive_bus.subscribe(channel):
            assert await pubsub_clients() == 2
    await wait_numsub(redis, channel, 0)
    assert await pubsub_clients() == 0


async def test_overflow_naive_bus_slow_subscriber_ended_once(
    naive_bus: PerSubscriberRedisBus, redis: Redis
) -> None:
    channel = channel_name()
    overflows: list[str] = []
    async with naive_bus.subscribe(
        channel, max_buffer=2, on_overflow=lambda: overflows.append("slow")
    ) as slow:
        for n in range(5):
            await redis.publish(channel, str(n).encode())
        async with asyncio.timeout(5):
            while not slow.ended:
                await asyncio.sleep(0.02)
        assert overflows == ["slow"]
        assert [message async for message in slow] == []
    await wait_numsub(redis, channel, 0)


async def test_end_naive_bus_subscriptions_on_close(named_redis: Redis, redis: Redis) -> None:
    channel = channel_name()
    async with PerSubscriberRedisBus(named_redis) as bus, bus.subscribe(channel) as subscription:
        await bus.__aexit__(None, None, None)
        assert [message async for message in subscription] == []
    await wait_numsub(redis, channel, 0)
