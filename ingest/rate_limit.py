"""A token bucket per device: one device's flood cannot take the worker from the others.

Each device earns `rate` tokens a second up to `burst`; a message spends one, and a
message finding less than one token is refused (the worker drops it as `rate_limited`
and acknowledges it). Pure: the caller passes the clock. On the hot path a dictionary
lookup and a few float operations per message.

Bounded: at most `max_devices` buckets. Past that, buckets idle long enough to be full
again (they hold nothing a fresh bucket would not) are swept; if too few are idle, the
oldest ones are forgotten too, which only ever gives a device a fresh burst.
"""

from __future__ import annotations

from itertools import islice

MAX_DEVICES = 100_000


class DeviceRateLimiter:
    """Token buckets by device id; `allow` spends a token or says no."""

    __slots__ = ("_buckets", "_burst", "_idle", "_max", "_rate")

    def __init__(self, rate: float, burst: int, *, max_devices: int = MAX_DEVICES) -> None:
        if rate <= 0 or burst < 1 or max_devices < 1:
            raise ValueError("rate > 0, burst >= 1 and max_devices >= 1 are required")
        self._rate = rate
        self._burst = float(burst)
        self._idle = burst / rate  # seconds after which any bucket is full again
        self._max = max_devices
        # device id -> [tokens, time of the last refill]
        self._buckets: dict[str, list[float]] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, device_id: str, now: float) -> bool:
        """Whether the device may send a message at `now` (monotonic seconds)."""
        bucket = self._buckets.get(device_id)
        if bucket is None:
            if len(self._buckets) >= self._max:
                self._sweep(now)
            self._buckets[device_id] = [self._burst - 1.0, now]
            return True
        tokens = bucket[0] + (now - bucket[1]) * self._rate
        if tokens > self._burst:
            tokens = self._burst
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1.0
        return True

    def _sweep(self, now: float) -> None:
        buckets = self._buckets
        for device_id in [d for d, (_, at) in buckets.items() if now - at >= self._idle]:
            del buckets[device_id]
        # Room for a tenth more before the next sweep, so sweeps stay rare (amortised O(1));
        # if every bucket is busy, the first created go (a fresh burst at worst).
        excess = len(buckets) - (self._max - max(self._max // 10, 1))
        if excess > 0:
            for device_id in list(islice(buckets, excess)):
                del buckets[device_id]
