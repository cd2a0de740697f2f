"""A lease in Redis: at most one holder of a named job at a time, across processes.

`SET key token NX PX ttl` takes it; the holder renews it while it works and releases it
when done, both only while the key still holds its own token (a Lua check-and-act), so
a holder that stalled past the TTL cannot renew or release a successor's lease. Losing
the lease stops the work; the work must be safe to repeat (two holders, each thinking
itself alone, can exist for at most the moment a stalled one takes to notice).
"""

from __future__ import annotations

import secrets
from typing import Final

from redis.asyncio import Redis

_RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaseLost(Exception):
    """Another process holds the lease now (ours expired): stop the work."""


class RedisLease:
    """One named lease; `acquire`, then `renew` between steps, then `release`."""

    def __init__(self, redis: Redis, key: str, *, ttl_seconds: float) -> None:
        self._redis = redis
        self._key = key
        self._ttl_ms = max(int(ttl_seconds * 1000), 1)
        self._token = secrets.token_hex(16)

    async def acquire(self) -> bool:
        """Whether this process holds the lease now."""
        return bool(await self._redis.set(self._key, self._token, nx=True, px=self._ttl_ms))

    async def renew(self) -> None:
        """Extend the lease by its TTL; LeaseLost when it is no longer ours."""
        renewed = await self._redis.eval(_RENEW, 1, self._key, self._token, self._ttl_ms)
        if not renewed:
            raise LeaseLost(self._key)

    async def release(self) -> None:
        """Give the lease up, if it is still ours."""
        await self._redis.eval(_RELEASE, 1, self._key, self._token)
