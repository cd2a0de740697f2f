"""Pub/sub behind a tiny interface: Redis across processes, or in memory in one.

Each subscriber gets its own bounded queue. When it falls `max_buffer` messages
behind, its `on_overflow` callback runs once, its buffered messages are dropped and
its iteration ends: a slow consumer never makes the process grow.

Delivery is pub/sub's: at most once, and only while subscribed. With Redis,
messages published while the connection is down are lost; the subscriptions
themselves resume when it comes back (see live.redis_bus).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, KeysView
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Protocol, Self

from redis.asyncio import Redis

from core.settings import CommonSettings

logger = logging.getLogger(__name__)

type Message = tuple[str, bytes]  # (channel, payload)
type OverflowCallback = Callable[[], None]

DEFAULT_BUFFER = 256


class Bus(Protocol):
    """Publish bytes on a channel; subscribe to channels for a bounded stream of them."""

    async def publish(self, channel: str, payload: bytes) -> None: ...

    def subscribe(
        self,
        *channels: str,
        max_buffer: int = DEFAULT_BUFFER,
        on_overflow: OverflowCallback | None = None,
    ) -> AbstractAsyncContextManager[Subscription]: ...


class Subscription:
    """One subscriber's stream of (channel, payload), at most `max_buffer` behind.

    A deque and at most one waiting future rather than an asyncio.Queue: a thousand
    idle subscribers each kept a Queue's three deques and an Event (~3 KiB), and every
    message went through its getter bookkeeping.
    """

    __slots__ = (
        "_buffer",
        "_ended",
        "_max_buffer",
        "_on_overflow",
        "_waiter",
        "channels",
        "overflowed",
    )

    def __init__(
        self, channels: Iterable[str], *, max_buffer: int, on_overflow: OverflowCallback | None
    ) -> None:
        if max_buffer < 1:
            raise ValueError("max_buffer must be at least 1")
        self.channels = frozenset(channels)
        if not self.channels:
            raise ValueError("subscribe to at least one channel")
        self.overflowed = False
        self._max_buffer = max_buffer
        self._on_overflow = on_overflow
        self._buffer: deque[Message] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False

    @property
    def ended(self) -> bool:
        return self._ended

    def offer(self, message: Message) -> bool:
        """Queue one message; False when this subscriber receives no more."""
        if self._ended:
            return False
        if len(self._buffer) >= self._max_buffer:
            self.overflowed = True
            self.end()
            if self._on_overflow is not None:
                try:
                    self._on_overflow()
                except Exception:
                    logger.exception("overflow callback failed for %s", sorted(self.channels))
            return False
        self._buffer.append(message)
        self._wake()
        return True

    def end(self) -> None:
        """Drop what is buffered and end the iteration."""
        if self._ended:
            return
        self._ended = True
        self._buffer.clear()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Message:
        while not self._buffer:
            if self._ended:
                raise StopAsyncIteration
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        return self._buffer.popleft()


class Fanout:
    """The local subscribers of each channel; tells `on_change` when the channel set changes."""

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self._subscribers: dict[str, set[Subscription]] = {}
        self._on_change = on_change

    @property
    def channels(self) -> KeysView[str]:
        return self._subscribers.keys()

    def count(self, channel: str) -> int:
        """Local subscribers of one channel."""
        return len(self._subscribers.get(channel, ()))

    def add(self, subscription: Subscription) -> None:
        changed = False
        for channel in subscription.channels:
            subscribers = self._subscribers.setdefault(channel, set())
            changed |= not subscribers
            subscribers.add(subscription)
        if changed and self._on_change is not None:
            self._on_change()

    def remove(self, subscription: Subscription) -> None:
        changed = False
        for channel in subscription.channels:
            subscribers = self._subscribers.get(channel)
            if subscribers is None or subscription not in subscribers:
                continue
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[channel]
                changed = True
        if changed and self._on_change is not None:
            self._on_change()

    def dispatch(self, channel: str, payload: bytes) -> None:
        """Offer one message to every subscriber of `channel`; drop those that overflow."""
        message = (channel, payload)  # one tuple shared by every subscriber
        for subscription in list(self._subscribers.get(channel, ())):
            if not subscription.offer(message):
                self.remove(subscription)

    def end_all(self) -> None:
        """End every subscription (shutdown)."""
        for subscriptions in list(self._subscribers.values()):
            for subscription in list(subscriptions):
                subscription.end()
                self.remove(subscription)


class InMemoryBus:
    """The bus within one process: for development without Redis, and for tests."""

    def __init__(self) -> None:
        self._fanout = Fanout()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._fanout.end_all()

    def local_subscribers(self, channel: str) -> int:
        return self._fanout.count(channel)

    async def publish(self, channel: str, payload: bytes) -> None:
        self._fanout.dispatch(channel, payload)

    @asynccontextmanager
    async def subscribe(
        self,
        *channels: str,
        max_buffer: int = DEFAULT_BUFFER,
        on_overflow: OverflowCallback | None = None,
    ) -> AsyncIterator[Subscription]:
        subscription = Subscription(channels, max_buffer=max_buffer, on_overflow=on_overflow)
        self._fanout.add(subscription)
        try:
            yield subscription
        finally:
            self._fanout.remove(subscription)


@asynccontextmanager
async def open_bus(settings: CommonSettings, redis: Redis) -> AsyncIterator[Bus]:
    """The process's bus, as `settings.bus_backend` chooses; its tasks stop on exit."""
    if settings.bus_backend == "memory":
        async with InMemoryBus() as memory_bus:
            yield memory_bus
        return
    # Imported here: live.redis_bus imports this module.
    from live.redis_bus import RedisBus

    async with RedisBus(redis, reconnect_max=settings.bus_reconnect_max_seconds) as redis_bus:
        yield redis_bus


__all__ = ["DEFAULT_BUFFER", "Bus", "Fanout", "InMemoryBus", "Subscription", "open_bus"]
