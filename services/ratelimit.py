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


async def take(redis: Redis, scope: str, subject: str, *, limit: int, window_seconds: int) -> None:
    """Count one attempt, then RateLimited if it is over `limit`.

    Counting first makes the check atomic: of concurrent attempts only `limit` get
    through, where a check-then-count lets all of them pass before any is counted.
    """
    if await hit(redis, scope, subject, window_seconds=window_seconds) > limit:
        ttl = await redis.ttl(_key(scope, subject))
        raise RateLimited(retry_after=max(int(ttl), 1))


# Undoes one count, unless the window (and so the key) is gone meanwhile.
_GIVE_BACK = "if redis.call('exists', KEYS[1]) == 1 then return redis.call('decr', KEYS[1]) end"


async def give_back(redis: Redis, scope: str, subject: str) -> None:
    """Uncount one attempt taken with `take` that turned out not to be a failure."""
    await redis.eval(_GIVE_BACK, 1, _key(scope, subject))


async def reset(redis: Redis, scope: str, subject: str) -> None:
    """Forget the attempts of `subject` (after a successful login)."""
    await redis.delete(_key(scope, subject))
