"""The per-device token bucket as a pure state machine: the clock is passed in."""

from __future__ import annotations

import pytest

from ingest.rate_limit import DeviceRateLimiter


def test_allow_device_burst_then_its_rate() -> None:
    limiter = DeviceRateLimiter(rate=20, burst=100)
    assert all(limiter.allow("d", 0.0) for _ in range(100))
    assert not limiter.allow("d", 0.0)
    # 0.5 s later: 10 tokens earned, spent one by one.
    assert sum(limiter.allow("d", 0.5) for _ in range(50)) == 10
    # Idle long enough: a full burst again, never more.
    assert sum(limiter.allow("d", 100.0) for _ in range(500)) == 100


def test_keep_device_buckets_apart_flooding_device() -> None:
    limiter = DeviceRateLimiter(rate=1, burst=5)
    refused = sum(not limiter.allow("flooder", 0.0) for _ in range(10_000))
    assert refused == 10_000 - 5
    assert all(limiter.allow("other", 0.0) for _ in range(5))


def test_bound_buckets_evicting_idle_devices_first() -> None:
    limiter = DeviceRateLimiter(rate=10, burst=10, max_devices=100)
    for i in range(100):
        limiter.allow(f"idle-{i}", 0.0)
    assert len(limiter) == 100
    for _ in range(10):
        limiter.allow("busy", 5.0)  # its burst spent at 5.0
    # At 5.0 every idle bucket is full again (10 tokens / 10 a second): swept.
    assert limiter.allow("new", 5.0)
    assert len(limiter) <= 100
    assert not limiter.allow("busy", 5.0)  # kept: not idle


def test_bound_buckets_when_every_device_busy() -> None:
    limiter = DeviceRateLimiter(rate=1, burst=1, max_devices=100)
    for i in range(10_000):
        limiter.allow(f"d{i}", 0.0)
        assert len(limiter) <= 100


@pytest.mark.parametrize(
    "bad",
    [{"rate": 0, "burst": 1}, {"rate": 1, "burst": 0}, {"rate": 1, "burst": 1, "max_devices": 0}],
)
def test_refuse_limiter_parameters_out_of_range(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="required"):
        DeviceRateLimiter(**bad)  # type: ignore[arg-type]
