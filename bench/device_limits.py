"""What the per-device guards cost on the hot path: `python -m bench.device_limits`.

- DeviceRateLimiter.allow, once per message: 10,000 devices, each allowed (steady
  state) and each refused (a flooding device).
- AnomalyDetector.observe with the per-device series cap, once per value: 1,000 devices
  of three metrics (steady state), and one device inventing a new metric name per value
  (each evicts that device's least recently used series).

Best of several passes, against a loop calling a function that does nothing. Prints a
table and writes bench/results/device_limits.json. No services needed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bench.harness import print_table, write_results
from ingest.anomaly import AnomalyDetector
from ingest.rate_limit import DeviceRateLimiter

CALLS = 200_000
REPEATS = 7


def _noop(_device: str, _now: float) -> bool:
    return True


def _per_call(call: Callable[[str, float], object], keys: list[str]) -> float:
    """Nanoseconds per call of `call(key, now)` over CALLS calls cycling through keys."""
    n = len(keys)
    began = time.perf_counter_ns()
    for index in range(CALLS):
        call(keys[index % n], 0.0)
    return (time.perf_counter_ns() - began) / CALLS


def _best(make: Callable[[], Callable[[str, float], object]], keys: list[str]) -> float:
    return min(_per_call(make(), keys) for _ in range(REPEATS))


def main() -> None:
    devices = [f"{i:024x}" for i in range(10_000)]
    baseline = _best(lambda: _noop, devices)

    def allowing() -> Callable[[str, float], object]:
        limiter = DeviceRateLimiter(1e9, 10**9)
        return limiter.allow

    def refusing() -> Callable[[str, float], object]:
        limiter = DeviceRateLimiter(1e-9, 1)
        for device in devices:
            limiter.allow(device, 0.0)  # the burst spent: every next message refused
        return limiter.allow

    steady = [f"{d}:{m}" for d in devices[:1000] for m in ("t", "h", "p")]

    def observing(keys_metric: bool) -> Callable[[str, float], object]:
        detector = AnomalyDetector()
        counter = iter(range(10**9))

        def call(key: str, value: float) -> object:
            if keys_metric:
                return detector.observe("flooder", f"m{next(counter)}", value)
            device, _, metric = key.partition(":")
            return detector.observe(device, metric, value)

        return call

    def split_only() -> Callable[[str, float], object]:
        def call(key: str, value: float) -> object:
            device, _, metric = key.partition(":")
            return (device, metric, value)

        return call

    split = _best(split_only, steady)
    naming = _best(lambda: lambda key, value: f"m{key}", steady)
    cases = {
        "rate_limit_allowed": _best(allowing, devices) - baseline,
        "rate_limit_refused": _best(refusing, devices) - baseline,
        "anomaly_observe_steady": _best(lambda: observing(False), steady) - split,
        "anomaly_observe_new_metric_evicting": _best(lambda: observing(True), steady) - naming,
    }
    print_table(
        f"Per-device guards, {CALLS:,} calls (best of {REPEATS}), minus the loop's own cost",
        ["call", "per call"],
        [[name, f"{ns / 1000:.3f} µs"] for name, ns in cases.items()],
    )
    results = {"calls": CALLS, "ns_per_call": {k: round(v) for k, v in cases.items()}}
    print(f"\nwritten: {write_results('device_limits', results)}")


if __name__ == "__main__":
    main()
