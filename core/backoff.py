"""Exponential backoff for retry loops: a policy (frozen) and the waits of one loop.

A loop makes one `Backoff` from a policy, calls `sleep()` after each failure (each
wait longer than the last, up to the policy's maximum) and `reset()` once it counts
as a success. `delay` is the wait the next `sleep()` takes, for the log line before it.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

# Jitter only spreads reconnections in time; nothing here needs unpredictability.
_random = random.Random()  # noqa: S311


@dataclass(frozen=True, slots=True, kw_only=True)
class BackoffPolicy:
    """First wait, growth factor and cap (a cap below `first` applies from the second
    wait on); with `jitter`, each wait is drawn from [0, the exponential wait] ("full
    jitter"), so clients that failed together do not retry together."""

    first: float
    maximum: float
    factor: float = 2.0
    jitter: bool = False

    def __post_init__(self) -> None:
        if self.first <= 0 or self.maximum <= 0 or self.factor < 1:
            raise ValueError(f"invalid backoff policy {self!r}")


# An operation (a MongoDB read or write, a Redis publish) repeated until its server
# answers, or a Redis connection reopened.
RETRY = BackoffPolicy(first=0.1, maximum=5.0)
# A Redis subscription reopened after its connection dropped.
RESUBSCRIBE = BackoffPolicy(first=0.2, maximum=5.0)
# An MQTT connection reopened. Jittered: after a broker restart every worker and API
# process would otherwise log in, resume its session and resubscribe in the same instant.
MQTT_RECONNECT = BackoffPolicy(first=0.2, maximum=5.0, jitter=True)


class Backoff:
    """The waits of one retry loop under `policy`."""

    __slots__ = ("_base", "_delay", "_policy", "_random")

    def __init__(self, policy: BackoffPolicy, *, rng: random.Random | None = None) -> None:
        self._policy = policy
        self._random = rng if rng is not None else _random
        self._base = policy.first
        self._delay = self._draw()

    @property
    def delay(self) -> float:
        """The wait the next `sleep()` (or `next()`) takes."""
        return self._delay

    def _draw(self) -> float:
        return self._random.uniform(0.0, self._base) if self._policy.jitter else self._base

    def next(self) -> float:
        """The wait now due; the following one is longer, up to the maximum."""
        delay = self._delay
        policy = self._policy
        self._base = min(self._base * policy.factor, policy.maximum)
        self._delay = self._draw()
        return delay

    def reset(self) -> None:
        """After a success: the next wait is the first one again."""
        self._base = self._policy.first
        self._delay = self._draw()

    async def sleep(self) -> None:
        """Wait the delay now due (see `next`)."""
        await asyncio.sleep(self.next())
