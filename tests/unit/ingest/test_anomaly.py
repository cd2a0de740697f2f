"""The streaming detector on synthetic series: known spikes found, normal noise left alone.

Rates measured with the default parameters (alpha 0.05, z 5, warm-up 30), seeded,
100,000 points each (docs/alerts.md has the table):
    Gaussian noise                  false positives ~1e-5
    AR(1) noise (phi 0.9)           ~1e-5
    slow sine + noise               ~1e-5
    spikes of 7..12 sigma           all found (6..10 sigma: 190 of 199)
"""

from __future__ import annotations

import math
import random

import pytest

from ingest.anomaly import AnomalyDetector, AnomalyParameters

N = 100_000


def flags(series: list[float], parameters: AnomalyParameters | None = None) -> list[bool]:
    detector = AnomalyDetector(parameters)
    return [detector.observe("device", "metric", value) is not None for value in series]


def gaussian(rng: random.Random, n: int = N, mean: float = 20.0, sd: float = 1.0) -> list[float]:
    return [rng.gauss(mean, sd) for _ in range(n)]


def false_positive_rate(series: list[float]) -> float:
    warmup = AnomalyParameters().warmup
    flagged = flags(series)[warmup:]
    return sum(flagged) / len(flagged)


@pytest.mark.parametrize(("low", "high", "share"), [(7, 12, 1.0), (6, 10, 0.9)])
def test_detect_spikes_in_gaussian_noise(low: float, high: float, share: float) -> None:
    rng = random.Random(7)
    series = gaussian(rng)
    spikes = list(range(500, N, 500))  # 199 spikes, well apart, up or down
    for index in spikes:
        series[index] += rng.choice((-1, 1)) * rng.uniform(low, high)
    flagged = flags(series)
    found = sum(flagged[i] for i in spikes)
    false = sum(flagged) - found
    print(f"spikes of {low}..{high} sigma: found {found} of {len(spikes)}, {false} false")
    assert found >= share * len(spikes), f"found {found} of {len(spikes)}"
    assert false / (N - len(spikes)) < 1e-4, f"{false} false positives"


def test_detect_every_large_spike_after_warmup() -> None:
    rng = random.Random(1)
    series = gaussian(rng, 2000)
    spikes = [100, 400, 700, 1000, 1300, 1600, 1900]
    for index in spikes:
        series[index] += 15.0
    flagged = flags(series)
    assert [i for i in spikes if flagged[i]] == spikes
    assert sum(flagged) == len(spikes)


@pytest.mark.parametrize(
    ("name", "limit"),
    [("gaussian", 1e-4), ("ar1", 1e-4), ("sine", 1e-4), ("quantised", 1e-4)],
)
def test_flag_normal_series_rarely(name: str, limit: float) -> None:
    rng = random.Random(42)
    if name == "gaussian":
        series = gaussian(rng)
    elif name == "ar1":
        level = 0.0
        series = []
        for _ in range(N):
            level = 0.9 * level + rng.gauss(0, 1)
            series.append(20 + level)
    elif name == "sine":
        series = [20 + 5 * math.sin(2 * math.pi * i / 1440) + rng.gauss(0, 0.5) for i in range(N)]
    else:
        series = [round(rng.gauss(20, 0.3), 1) for _ in range(N)]
    rate = false_positive_rate(series)
    print(f"false-positive rate on {name}: {rate:.2e}")
    assert rate < limit


def test_flag_nothing_during_warmup() -> None:
    parameters = AnomalyParameters(warmup=30)
    series = [20.0, 21.0] * 10 + [1000.0] + [20.0] * 8  # the spike is value 21 of 29
    assert not any(flags(series, parameters))


def test_flag_change_of_constant_series_only_beyond_floor() -> None:
    # A constant series has no spread: one quantisation step is not an anomaly
    # (1% of |mean| is the floor), a jump of 50% is.
    detector = AnomalyDetector()
    for _ in range(100):
        assert detector.observe("d", "m", 20.0) is None
    assert detector.observe("d", "m", 20.1) is None
    score = detector.observe("d", "m", 30.0)
    assert score is not None
    assert score.z > 5
    assert score.mean == pytest.approx(20.0, abs=0.01)


def test_absorb_level_shift_within_few_dozen_readings() -> None:
    rng = random.Random(3)
    series = gaussian(rng, 500) + gaussian(rng, 500, mean=40.0)
    flagged = flags(series)
    after_shift = flagged[500:]
    assert after_shift[0], "the shift itself is anomalous"
    first_quiet = after_shift.index(False)
    assert first_quiet < 50
    assert sum(after_shift[100:]) <= 1


def test_keep_series_apart_per_device_and_metric() -> None:
    detector = AnomalyDetector(AnomalyParameters(warmup=5))
    for i in range(50):
        detector.observe("a", "temp", 20.0 + (i % 2) * 0.5)
        detector.observe("b", "temp", 100.0 + (i % 2) * 0.5)
        detector.observe("a", "hum", 50.0 + (i % 2) * 0.5)
    assert detector.series_count == 3
    assert detector.observe("a", "temp", 100.0) is not None  # normal for b, not for a
    assert detector.observe("b", "temp", 100.2) is None
    assert detector.observe("a", "hum", 50.2) is None


def test_forget_series_beyond_memory_bound() -> None:
    detector = AnomalyDetector(AnomalyParameters(max_series=10))
    for i in range(25):
        detector.observe(f"device-{i}", "m", 1.0)
    assert detector.series_count <= 10
    detector.forget("device-24")
    assert detector.series_count <= 9


@pytest.mark.parametrize(
    "bad",
    [
        {"alpha": 0.0},
        {"alpha": 1.0},
        {"z_threshold": 0.0},
        {"warmup": 1},
        {"max_series": 0},
        {"max_metrics_per_device": 0},
    ],
)
def test_refuse_parameters_out_of_range(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"must be|required"):
        AnomalyParameters(**bad)  # type: ignore[arg-type]


def test_evict_device_own_lru_series_beyond_metric_cap() -> None:
    detector = AnomalyDetector(AnomalyParameters(warmup=5, max_metrics_per_device=4))
    for i in range(50):
        detector.observe("victim", "temp", 20.0 + (i % 2) * 0.5)
        detector.observe("attacker", "kept", 1.0)
    for i in range(1000):
        detector.observe("attacker", f"invented-{i}", float(i))
        detector.observe("attacker", "kept", 1.0)  # used all along: never the LRU one
    assert detector.device_series_count("attacker") == 4
    assert detector.series_count == 5
    assert detector.observe("attacker", "kept", 1.0) is None  # still warm
    assert detector.observe("victim", "temp", 100.0) is not None  # baseline kept


def test_forget_least_recent_device_beyond_global_bound() -> None:
    detector = AnomalyDetector(AnomalyParameters(warmup=5, max_series=6))
    for i in range(50):
        for device in ("a", "b", "c"):
            detector.observe(device, "temp", 20.0 + (i % 2) * 0.5)
        detector.observe("a", "hum", 50.0)
    detector.observe("a", "temp", 20.0)  # "b" is now the least recently seen device
    for i in range(3):
        detector.observe("d", f"m{i}", 1.0)
    assert detector.series_count <= 6
    assert detector.device_series_count("b") == 0
    assert detector.observe("a", "temp", 100.0) is not None
    assert detector.observe("c", "temp", 100.0) is not None
