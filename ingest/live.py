"""The live path: events to Redis pub/sub as soon as a message is valid, never waiting."""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.events import Kind, channels_for
from ingest.stats import IngestStats

logger = logging.getLogger(__name__)

PIPELINE_MAX = 500


class LivePublisher:
    """A bounded outbox drained into pipelined PUBLISHes; full or failing means dropped."""

    def __init__(self, redis: Redis, stats: IngestStats, *, max_pending: int = 10_000) -> None:
        self._redis = redis
        self._stats = stats
        self._outbox: asyncio.Queue[tuple[Kind, str, str, bytes]] = asyncio.Queue(max_pending)

    def publish(self, kind: Kind, device_id: str, owner_id: str, payload: bytes) -> None:
        """Queue one event for its device, owner and all-devices channels; never blocks."""
        try:
            self._outbox.put_nowait((kind, device_id, owner_id, payload))
        except asyncio.QueueFull:
            self._stats.live_dropped.inc()

    async def run(self) -> None:
        """Publish until cancelled; Redis trouble drops events (counted), not the worker."""
        delay = 0.1
        while True:
            events = [await self._outbox.get()]
            while len(events) < PIPELINE_MAX and not self._outbox.empty():
                events.append(self._outbox.get_nowait())
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for kind, device_id, owner_id, payload in events:
                        for channel in channels_for(kind, device_id, owner_id):
                            pipe.publish(channel, payload)
                    await pipe.execute()
                delay = 0.1
            except RedisError as err:
                self._stats.live_dropped.inc(len(events))
                logger.warning("live events dropped, Redis unavailable: %s", err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
