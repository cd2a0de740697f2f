"""The fan-out benchmark's baseline bus: a Redis connection per subscriber.

What live.redis_bus replaces: every subscription opens its own pub/sub connection and
runs its own reader task, so Redis sends each message once per subscriber and the
process holds as many sockets as subscriptions. bench/fanout.py runs it (through
bench.baseline_api) to show what the shared listener saves. It has no reconnection: a
lost connection ends the subscription. Not for production.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from types import TracebackType
from typing import Self

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.connection import ConnectionPool
from redis.exceptions import RedisError

from live.bus import DEFAULT_BUFFER, OverflowCallback, Subscription

logger = logging.getLogger(__name__)

MAX_CONNECTIONS = 100_000
# Hundreds of subscribers arriving at once each open a connection: more than the
# shared client's 2 s (a burst is this design's cost, not a Redis outage).
CONNECT_TIMEOUT = 10.0


class PerSubscriberRedisBus:
    """Bus over Redis with no sharing: one PubSub connection and one task per subscriber."""

    def __init__(self, redis: Redis, *, ready_timeout: float = 5.0) -> None:
        self._redis = redis
        self._ready_timeout = ready_timeout
        self._open: set[Subscription] = set()
        # A pool of its own: the client's is bounded (100), subscribers here are not.
        source = redis.connection_pool
        kwargs = source.connection_kwargs | {"socket_connect_timeout": CONNECT_TIMEOUT}
        self._pool = ConnectionPool(
            connection_class=source.connection_class, max_connections=MAX_CONNECTIONS, **kwargs
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for subscription in list(self._open):
            subscription.end()
        await self._pool.disconnect()

    async def publish(self, channel: str, payload: bytes) -> None:
        await self._redis.publish(channel, payload)

    @asynccontextmanager
    async def subscribe(
        self,
        *channels: str,
        max_buffer: int = DEFAULT_BUFFER,
        on_overflow: OverflowCallback | None = None,
    ) -> AsyncIterator[Subscription]:
        """A subscription with a connection of its own, closed when the block ends."""
        subscription = Subscription(channels, max_buffer=max_buffer, on_overflow=on_overflow)
        pubsub = PubSub(connection_pool=self._pool)
        reader: asyncio.Task[None] | None = None
        self._open.add(subscription)
        try:
            await pubsub.subscribe(*subscription.channels)
            await self._confirmed(pubsub, len(subscription.channels))
            reader = asyncio.create_task(self._read(pubsub, subscription))
            yield subscription
        finally:
            self._open.discard(subscription)
            if reader is not None:
                reader.cancel()
                with suppress(asyncio.CancelledError):
                    await reader
            # Closing the connection unsubscribes it: nothing is asked of Redis.
            await pubsub.aclose()

    async def _confirmed(self, pubsub: PubSub, expected: int) -> None:
        async with asyncio.timeout(self._ready_timeout):
            confirmed = 0
            while confirmed < expected:
                message = await pubsub.get_message(timeout=self._ready_timeout)
                if message is not None and message["type"] == "subscribe":
                    confirmed += 1

    @staticmethod
    async def _read(pubsub: PubSub, subscription: Subscription) -> None:
        try:
            while not subscription.ended:
                message = await pubsub.get_message(timeout=None)
                if message is None or message["type"] != "message":
                    continue
                channel = message["channel"]
                name = channel.decode() if isinstance(channel, bytes) else str(channel)
                if not subscription.offer((name, bytes(message["data"]))):
                    return
        except (RedisError, OSError) as err:
            logger.warning("baseline bus: Redis connection lost, subscription ended: %s", err)
            subscription.end()


__all__ = ["PerSubscriberRedisBus"]
