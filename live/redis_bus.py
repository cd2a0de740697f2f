"""The Redis bus: ONE pub/sub connection per process, shared by every local subscriber.

A thousand GraphQL subscriptions cost one Redis connection: channels are
reference-counted (SUBSCRIBE when the first local subscriber arrives, UNSUBSCRIBE
when the last leaves) and a single reader task dispatches each message to the
subscribers' bounded queues.

When the connection is lost the reader reconnects with exponential backoff and
subscribes again to every channel still in use. Messages published in between
are lost: that is pub/sub's contract (the readings themselves are in MongoDB).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager, suppress
from types import TracebackType
from typing import Any, Self

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from core.backoff import Backoff, BackoffPolicy
from live.bus import DEFAULT_BUFFER, Fanout, OverflowCallback, Subscription
from live.compat import connection_stream

logger = logging.getLogger(__name__)

_FIRST_DELAY = 0.05


class RedisBus:
    """Redis pub/sub with local fan-out; an async context manager running the reader."""

    def __init__(
        self,
        redis: Redis,
        *,
        reconnect_max: float = 10.0,
        health_interval: float = 30.0,
        ready_timeout: float = 5.0,
        client_name: str = "iotplatform-bus",
    ) -> None:
        self._redis = redis
        self._client_name = client_name
        self._reconnect = BackoffPolicy(first=_FIRST_DELAY, maximum=reconnect_max)
        self._health_interval = health_interval
        self._ready_timeout = ready_timeout
        self._fanout = Fanout(on_change=self._channels_changed)
        # Channels SUBSCRIBEd on the current connection (and not UNSUBSCRIBEd since).
        self._sent: set[str] = set()
        # Subscribe confirmations still to come, per channel: replies arrive in order.
        self._awaiting: dict[str, int] = {}
        # Set once Redis has confirmed the channel on the current connection.
        self._ready: dict[str, asyncio.Event] = {}
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.connections = 0  # connections made so far: 1 + reconnects

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run(), name="redis-bus")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._fanout.end_all()
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def local_subscribers(self, channel: str) -> int:
        return self._fanout.count(channel)

    async def publish(self, channel: str, payload: bytes) -> None:
        await self._redis.publish(channel, payload)

    @asynccontextmanager
    async def subscribe(
        self,
        *channels: str,
        max_buffer: int = DEFAULT_BUFFER,
        on_overflow: OverflowCallback | None = None,
    ) -> AsyncIterator[Subscription]:
        """A subscription that receives what is published once this returns."""
        subscription = Subscription(channels, max_buffer=max_buffer, on_overflow=on_overflow)
        self._fanout.add(subscription)
        try:
            await self._until_confirmed(subscription.channels)
            yield subscription
        finally:
            # No await here: leaving must not depend on Redis, nor be cancellable.
            self._fanout.remove(subscription)

    async def _until_confirmed(self, channels: Iterable[str]) -> None:
        events = [self._ready.setdefault(channel, asyncio.Event()) for channel in channels]
        try:
            async with asyncio.timeout(self._ready_timeout):
                for event in events:
                    await event.wait()
        except TimeoutError:
            # Redis is away: the subscription stands and resumes when it is back.
            logger.warning("Redis has not confirmed %s yet; continuing", sorted(channels))

    def _channels_changed(self) -> None:
        self._dirty.set()

    def _new_connection(self) -> AbstractConnection:
        pool = self._redis.connection_pool
        kwargs: dict[str, Any] = {
            **pool.connection_kwargs,
            # Payloads stay bytes, and the reader does its own health checks (the
            # connection's own would read concurrently with it).
            "decode_responses": False,
            "health_check_interval": 0,
            "client_name": self._client_name,  # CLIENT LIST names the bus
        }
        return pool.connection_class(**kwargs)

    async def _run(self) -> None:
        backoff = Backoff(self._reconnect)
        while True:
            connection: AbstractConnection | None = None
            try:
                connection = self._new_connection()
                await connection.connect_check_health(check_health=False)
                self.connections += 1
                if self.connections > 1:
                    logger.info(
                        "Redis pub/sub reconnected; resubscribing %d channels",
                        len(self._fanout.channels),
                    )
                backoff.reset()
                self._dirty.set()  # subscribe every channel in use
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._write(connection))
                    group.create_task(self._read(connection))
            except* (RedisError, OSError) as errors:
                logger.warning(
                    "Redis pub/sub connection lost (%s); retrying in %.2f s",
                    errors.exceptions[0],
                    backoff.delay,
                )
            except* Exception:
                logger.exception("Redis bus failed; retrying in %.2f s", backoff.delay)
            finally:
                self._forget_connection()
                if connection is not None:
                    await connection.disconnect(nowait=True)
            await backoff.sleep()

    def _forget_connection(self) -> None:
        self._sent.clear()
        self._awaiting.clear()
        for event in self._ready.values():
            event.clear()

    async def _write(self, connection: AbstractConnection) -> None:
        """Bring the connection's subscriptions in line with the local subscribers."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            wanted = set(self._fanout.channels)
            added = sorted(wanted - self._sent)
            dropped = sorted(self._sent - wanted)
            for channel in [c for c in self._ready if c not in wanted]:
                del self._ready[channel]
            if added:
                self._sent.update(added)
                for channel in added:
                    self._awaiting[channel] = self._awaiting.get(channel, 0) + 1
                await connection.send_command("SUBSCRIBE", *added, check_health=False)
            if dropped:
                self._sent.difference_update(dropped)
                await connection.send_command("UNSUBSCRIBE", *dropped, check_health=False)

    async def _read(self, connection: AbstractConnection) -> None:
        """Dispatch messages; PING when idle so a dead peer is noticed.

        The socket is read in chunks and parsed here (PushReplies): redis-py's parser
        awaits the stream once per line of every reply, which cost a fifth of a busy
        API's CPU (three channels per reading event)."""
        stream = connection_stream(connection)
        replies = PushReplies()
        pinged = False
        while True:
            try:
                async with asyncio.timeout(self._health_interval):
                    data = await stream.read(_CHUNK)
            except TimeoutError:
                if pinged:
                    raise RedisConnectionError(
                        "Redis did not answer PING on the pub/sub link"
                    ) from None
                await connection.send_command("PING", check_health=False)
                pinged = True
                continue
            if not data:
                raise RedisConnectionError("Redis closed the pub/sub connection")
            pinged = False
            for response in replies.feed(data):
                if isinstance(response, list) and len(response) >= 2:
                    self._handle(response)

    def _handle(self, response: list[Any]) -> None:
        kind = response[0]
        channel = response[1].decode() if isinstance(response[1], bytes) else str(response[1])
        if kind == b"message" and len(response) == 3:
            self._fanout.dispatch(channel, bytes(response[2]))
        elif kind == b"subscribe":
            left = self._awaiting.get(channel, 0) - 1
            if left > 0:
                self._awaiting[channel] = left
                return
            self._awaiting.pop(channel, None)
            event = self._ready.get(channel)
            if event is not None and channel in self._sent:
                event.set()


class PushReplies:
    """RESP2/RESP3 replies of a subscribed connection, parsed from chunks as they come.

    Only what a subscribed connection is sent: arrays and pushes of bulk strings and
    integers, simple strings, nulls, errors (raised as ResponseError).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        """The replies completed by `data`, in order; a partial one waits for more."""
        buffer = self._buffer
        buffer += data
        replies: list[Any] = []
        position = 0
        while True:
            parsed = _parse(buffer, position)
            if parsed is None:
                break
            reply, position = parsed
            replies.append(reply)
        del buffer[:position]
        return replies


def _parse(buffer: bytearray, position: int) -> tuple[Any, int] | None:
    """One reply at `position` and where the next starts; None if it is incomplete."""
    end = buffer.find(b"\r\n", position)
    if end < 0:
        return None
    kind = buffer[position]
    line = bytes(buffer[position + 1 : end])
    position = end + 2
    if kind in _AGGREGATES:
        items: list[Any] = []
        for _ in range(int(line)):
            parsed = _parse(buffer, position)
            if parsed is None:
                return None
            item, position = parsed
            items.append(item)
        return items, position
    if kind == _BULK:
        size = int(line)
        if size < 0:
            return None, position
        if len(buffer) < position + size + 2:
            return None
        return bytes(buffer[position : position + size]), position + size + 2
    if kind == _INTEGER:
        return int(line), position
    if kind == _SIMPLE:
        return line, position
    if kind == _NULL:
        return None, position
    if kind == _ERROR:
        raise ResponseError(line.decode(errors="replace"))
    raise RedisConnectionError(f"unexpected RESP reply type {chr(kind)!r} on the pub/sub link")


_CHUNK = 1 << 16
_AGGREGATES = frozenset(b"*>")
_BULK, _INTEGER, _SIMPLE, _NULL, _ERROR = b"$:+_-"


__all__ = ["PushReplies", "RedisBus"]
