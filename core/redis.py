"""The Redis connection pool shared by a process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis

from core.settings import CommonSettings


@asynccontextmanager
async def open_redis(settings: CommonSettings, *, name: str | None = None) -> AsyncIterator[Redis]:
    """A pooled client; connections are made lazily, so Redis may start later. `name`:
    each connection's CLIENT SETNAME (CLIENT LIST tells its users apart)."""
    client = Redis.from_url(
        settings.redis_url,
        decode_responses=False,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=30,
        client_name=name,
    )
    try:
        yield client
    finally:
        await client.aclose()
