"""Rollout progress as live events: each device state change, on its rollout's channel."""

from __future__ import annotations

import logging
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.events import OtaProgressEvent, ota_update_channel
from models.firmware import FirmwareUpdateTarget

logger = logging.getLogger(__name__)


class EventSink(Protocol):
    """Where events go: the API's bus (live.bus.Bus) or RedisSink in the worker."""

    async def publish(self, channel: str, payload: bytes) -> None: ...


class RedisSink:
    """Publishes straight to Redis (the worker has no bus)."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def publish(self, channel: str, payload: bytes) -> None:
        await self._redis.publish(channel, payload)


def progress_event(target: FirmwareUpdateTarget) -> OtaProgressEvent:
    """A target's current state as a live event."""
    return OtaProgressEvent(
        update_id=str(target.update_id),
        device_id=str(target.device_id),
        owner_id=str(target.owner_id),
        state=target.state,
        progress=target.progress,
        error=target.error,
        at=target.updated_at,
    )


async def publish_progress(sink: EventSink, target: FirmwareUpdateTarget) -> bool:
    """Publish a target's state after it was stored; False when pub/sub is away.

    Pub/sub delivers at most once anyway: the state is in MongoDB, and a subscriber
    starts from a snapshot of it (graph.firmware.subscriptions).
    """
    event = progress_event(target)
    try:
        await sink.publish(ota_update_channel(event.update_id), event.encode())
    except (RedisError, OSError) as err:
        logger.warning("progress of device %s not published: %s", event.device_id, err)
        return False
    return True
