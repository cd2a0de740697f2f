"""The bus: fan-out over one Redis connection, bounded buffers, resubscription."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
from redis.asyncio import Redis

from live.bus import Bus, InMemoryBus, Subscription
from live.redis_bus import RedisBus
from tests.integration.live import numsub, wait_numsub


def channel_name() -> str:
    return f"test-bus:{uuid.uuid4().hex}"


async def take(subscription: Subscription, count: int) -> list[tuple[str, bytes]]:
    async with asyncio.timeout(5):
        return [await anext(subscription) for _ in range(count)]


@pytest.fixture
async def redis_bus(redis: Redis) -> AsyncIterator[RedisBus]:
    async with RedisBus(redis, client_name=f"test-bus-{uuid.uuid4().hex[:8]}") as bus:
        yield bus


@pytest.fixture(params=["redis", "memory"])
async def bus(request: pytest.FixtureRequest, redis: Redis) -> AsyncIterator[Bus]:
    if request.param == "memory":
        async with InMemoryBus() as memory_bus:
            yield memory_bus
    else:
        async with RedisBus(redis) as shared_bus:
            yield shared_bus


async def test_fan_out_redis_bus_fifty_subscribers_one_connection(
    redis_bus: RedisBus, redis: Redis
) -> None:
    channel = channel_name()
    async with AsyncExitStack() as stack:
        subscriptions = [
            await stack.enter_async_context(redis_bus.subscribe(channel)) for _ in range(50)
        ]
        assert await numsub(redis, channel) == 1
        assert redis_bus.local_subscribers(channel) == 50
        for n in range(3):
            await redis.publish(channel, f"event {n}".encode())
        for subscription in subscriptions:
            assert await take(subscription, 3) == [
                (channel, b"event 0"),
                (channel, b"event 1"),
                (channel, b"event 2"),
            ]
    await wait_numsub(redis, channel, 0)
    assert redis_bus.local_subscribers(channel) == 0


async def test_unsubscribe_redis_bus_last_subscriber_only(
    redis_bus: RedisBus, redis: Redis
) -> None:
    channel = channel_name()
    async with redis_bus.subscribe(channel) as staying:
        async with redis_bus.subscribe(channel):
            assert await numsub(redis, channel) == 1
        # One local subscriber left: the connection stays subscribed and delivers.
        await redis.publish(channel, b"still here")
        assert await take(staying, 1) == [(channel, b"still here")]
        assert await numsub(redis, channel) == 1
    await wait_numsub(redis, channel, 0)


async def test_deliver_bus_several_channels_one_subscription(bus: Bus) -> None:
    first, second = channel_name(), channel_name()
    async with bus.subscribe(first, second) as subscription:
        await bus.publish(first, b"a")
        await bus.publish(second, b"b")
        assert await take(subscription, 2) == [(first, b"a"), (second, b"b")]


async def test_overflow_bus_slow_subscriber_dropped_once(bus: Bus) -> None:
    channel = channel_name()
    overflows: list[str] = []
    async with (
        bus.subscribe(channel, max_buffer=3, on_overflow=lambda: overflows.append("slow")) as slow,
        bus.subscribe(channel, max_buffer=100) as fast,
    ):
        for n in range(10):
            await bus.publish(channel, str(n).encode())
        received = await take(fast, 10)
        assert [payload for _, payload in received] == [str(n).encode() for n in range(10)]
        assert overflows == ["slow"]
        assert slow.overflowed
        # Its buffer is dropped and its iteration is over: nothing is kept for it.
        assert [message async for message in slow] == []
        await bus.publish(channel, b"later")
        assert await take(fast, 1) == [(channel, b"later")]
        assert overflows == ["slow"]


async def test_overflow_redis_bus_last_subscriber_unsubscribes(
    redis_bus: RedisBus, redis: Redis
) -> None:
    channel = channel_name()
    async with redis_bus.subscribe(channel, max_buffer=2) as slow:
        for n in range(3):
            await redis.publish(channel, str(n).encode())
        await wait_numsub(redis, channel, 0)
        assert slow.overflowed


async def test_resubscribe_redis_bus_after_connection_killed(
    redis_bus: RedisBus, redis: Redis
) -> None:
    channel = channel_name()
    async with redis_bus.subscribe(channel) as subscription:
        await redis.publish(channel, b"before")
        assert await take(subscription, 1) == [(channel, b"before")]
        # Only this bus's connection: other processes' subscribers on this Redis stay.
        (client,) = [
            c
            for c in await redis.client_list(_type="pubsub")
            if c["name"] == redis_bus._client_name
        ]
        await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub", "ID", client["id"])
        async with asyncio.timeout(5):
            while redis_bus.connections < 2:
                await asyncio.sleep(0.02)
        await wait_numsub(redis, channel, 1)
        await redis.publish(channel, b"after")
        assert await take(subscription, 1) == [(channel, b"after")]


async def test_end_bus_subscriptions_on_close(redis: Redis) -> None:
    channel = channel_name()
    async with RedisBus(redis) as closing_bus, closing_bus.subscribe(channel) as subscription:
        await closing_bus.__aexit__(None, None, None)
        assert [message async for message in subscription] == []
