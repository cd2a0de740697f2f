"""Helpers for live-event tests: Redis channel subscriber counts, polled briefly."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis


async def numsub(redis: Redis, channel: str) -> int:
    """Connections subscribed to `channel` (PUBSUB NUMSUB), across the whole server."""
    reply = await redis.pubsub_numsub(channel)
    return int(reply[0][1])


async def wait_numsub(redis: Redis, channel: str, expected: int, timeout: float = 5.0) -> None:
    """Poll until PUBSUB NUMSUB of `channel` is `expected`; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while (count := await numsub(redis, channel)) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"NUMSUB {channel} is {count}, expected {expected}")
        await asyncio.sleep(0.02)
