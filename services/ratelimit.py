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


# KEYS: failures, lockout level, lock. ARGV: allowance, window, first lock, longest lock,
# level memory (ms). Counting first, as `take` does: of parallel attempts only the
# allowance gets through. After a lockout one failure is enough for the next, twice as long.
_LOCKOUT = """
local locked = redis.call('pttl', KEYS[3])
if locked > 0 then return locked end
local level = tonumber(redis.call('get', KEYS[2]) or '0')
local allowance = tonumber(ARGV[1])
if level > 0 then allowance = 1 end
local count = redis.call('incr', KEYS[1])
if count == 1 then redis.call('pexpire', KEYS[1], ARGV[2]) end
if count <= allowance then return 0 end
level = level + 1
local lock = math.min(tonumber(ARGV[3]) * 2 ^ (level - 1), tonumber(ARGV[4]))
redis.call('set', KEYS[2], level, 'px', ARGV[5])
redis.call('set', KEYS[3], 1, 'px', lock)
redis.call('del', KEYS[1])
return lock
"""

# How long a subject's lockout level is remembered after its last lockout.
_LEVEL_MEMORY_SECONDS = 24 * 3600


def _lockout_keys(scope: str, subject: str) -> list[str]:
    return [
        _key(f"{scope}-failures", subject),
        _key(f"{scope}-level", subject),
        _key(scope, subject),
    ]


async def take_or_lock_out(
    redis: Redis,
    scope: str,
    subject: str,
    *,
    allowance: int,
    window_seconds: int,
    lockout_seconds: int,
    max_lockout_seconds: int,
) -> None:
    """Count one attempt; RateLimited while `subject` is locked out, or when this attempt
    goes over its allowance, which locks it out: lockout_seconds the first time, twice as
    long each next time (up to max_lockout_seconds), one attempt allowed in between."""
    longest = max(max_lockout_seconds, lockout_seconds)
    locked_ms = await redis.eval(
        _LOCKOUT,
        3,
        *_lockout_keys(scope, subject),
        allowance,
        window_seconds * 1000,
        lockout_seconds * 1000,
        longest * 1000,
        max(_LEVEL_MEMORY_SECONDS, 2 * longest) * 1000,
    )
    if int(locked_ms) > 0:
        raise RateLimited(retry_after=max(-(-int(locked_ms) // 1000), 1))


async def clear_lockout(redis: Redis, scope: str, subject: str) -> None:
    """Forget the attempts and lockouts of `subject` (after a successful login)."""
    await redis.delete(*_lockout_keys(scope, subject))
