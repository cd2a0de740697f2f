"""Fixed-window attempt counters in Redis, shared by every API process."""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis

from services.errors import RateLimited


def _key(scope: str, subject: str) -> str:
    # Hashed so that e-mail addresses never appear in Redis keys.
    digest = hashlib.sha256(subject.encode()).hexdigest()[:32]
    return f"ratelimit:{scope}:{digest}"


async def check(redis: Redis, scope: str, subject: str, *, limit: int) -> None:
    """RateLimited when `subject` has used up `limit` attempts in the current window."""
    key = _key(scope, subject)
    count = await redis.get(key)
    if count is not None and int(count) >= limit:
        ttl = await redis.ttl(key)
        raise RateLimited(retry_after=max(int(ttl), 1))


async def hit(redis: Redis, scope: str, subject: str, *, window_seconds: int) -> int:
    """Count one attempt; the window starts with the first one."""
    key = _key(scope, subject)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, window_seconds, nx=True)
        count, _ = await pipe.execute()
    return int(count)


async def reset(redis: Redis, scope: str, subject: str) -> None:
    """Forget the attempts of `subject` (after a successful login)."""
    await redis.delete(_key(scope, subject))
