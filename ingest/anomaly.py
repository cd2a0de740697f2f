"""Streaming anomaly detection: an EWMA mean and variance per device and metric.

For each series the detector keeps three numbers: how many values it has seen, an
exponentially weighted mean and an exponentially weighted variance (West's
incremental form). A value is scored *before* it updates the estimate:

    z = (x - mean) / max(std, min_std, min_std_ratio * |mean|)

and is anomalous when |z| > z_threshold, once the series has seen `warmup` values.

- Warm-up: the first values use weight max(alpha, 1/n), i.e. a plain running mean and
  variance, so the estimate is sound by the time scoring starts.
- Robust update: after warm-up the value enters the estimate clipped to
  mean ± z_threshold * scale, so one spike barely moves the baseline, while a real level
  shift is absorbed within a few dozen readings (each clipped step widens the variance).
- Floors: a constant series has no spread; without a floor its first change of one
  quantisation step would score infinity. The relative floor (default 1% of |mean|)
  and the absolute one decide what counts as "no change".

Memory: at most `max_metrics_per_device` series per device (a device inventing new
metric names evicts its own least recently used series, never another device's) and
at most `max_series` in all (beyond it, the least recently seen device is forgotten).

Pure and synchronous: no I/O, a dictionary lookup and a few float operations per value.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class AnomalyParameters:
    alpha: float = 0.05  # weight of the newest value; ~2/alpha values of memory
    z_threshold: float = 5.0
    warmup: int = 30
    min_std_ratio: float = 0.01
    min_std: float = 1e-6
    max_series: int = 200_000  # memory bound in all: least recently seen devices go first
    max_metrics_per_device: int = 64  # one device's bound: its least recently used go first

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError("alpha must be in (0, 1)")
        if self.z_threshold <= 0 or self.warmup < 2 or self.max_series < 1:
            raise ValueError("z_threshold > 0, warmup >= 2 and max_series >= 1 are required")
        if self.max_metrics_per_device < 1:
            raise ValueError("max_metrics_per_device >= 1 is required")


@dataclass(frozen=True, slots=True)
class Score:
    """Why a value was anomalous: its z-score against the estimate before it."""

    z: float
    mean: float
    std: float


class _Series:
    __slots__ = ("count", "mean", "used", "var")

    def __init__(self, value: float, used: int) -> None:
        self.count = 1
        self.mean = value
        self.var = 0.0
        self.used = used  # the detector's tick when last observed: picks the LRU series


class AnomalyDetector:
    """EWMA mean/variance per (device, metric); `observe` scores and then learns a value."""

    def __init__(self, parameters: AnomalyParameters | None = None) -> None:
        self.parameters = p = parameters or AnomalyParameters()
        # Copied out of the dataclass: read for every value.
        self._alpha = p.alpha
        self._threshold = p.z_threshold
        self._warmup = p.warmup
        self._min_std = p.min_std
        self._min_std_ratio = p.min_std_ratio
        self._max_metrics = p.max_metrics_per_device
        # Devices in least recently seen order (moved to the end when seen).
        self._series: OrderedDict[str, dict[str, _Series]] = OrderedDict()
        self._count = 0
        self._tick = 0
        self._last_device: str | None = None

    @property
    def series_count(self) -> int:
        return self._count

    def device_series_count(self, device_id: str) -> int:
        metrics = self._series.get(device_id)
        return len(metrics) if metrics is not None else 0

    def observe(self, device_id: str, metric: str, value: float) -> Score | None:
        """A Score when `value` is anomalous for its series, else None; it is learnt either way."""
        devices = self._series
        metrics = devices.get(device_id)
        if metrics is None:
            metrics = devices[device_id] = {}
        elif device_id != self._last_device:
            # A reading's metrics come one after another: one move per reading, not per value.
            devices.move_to_end(device_id)
        self._last_device = device_id
        self._tick = tick = self._tick + 1
        series = metrics.get(metric)
        if series is None:
            self._add(device_id, metrics, metric, value, tick)
            return None
        series.used = tick
        mean = series.mean
        var = series.var
        scale = math.sqrt(var)
        floor = self._min_std_ratio * abs(mean)
        if floor < self._min_std:
            floor = self._min_std
        if scale < floor:
            scale = floor
        z = (value - mean) / scale
        threshold = self._threshold
        count = series.count
        if count >= self._warmup:
            limit = threshold * scale
            x = (
                mean + limit
                if value > mean + limit
                else mean - limit
                if value < mean - limit
                else value
            )
            alpha = self._alpha
        else:
            x = value
            alpha = 1.0 / (count + 1)
            if alpha < self._alpha:
                alpha = self._alpha
        diff = x - mean
        increment = alpha * diff
        series.mean = mean + increment
        series.var = (1.0 - alpha) * (var + diff * increment)
        series.count = count + 1
        if count >= self._warmup and (z > threshold or z < -threshold):
            return Score(z=z, mean=mean, std=scale)
        return None

    def _add(
        self, device_id: str, metrics: dict[str, _Series], metric: str, value: float, tick: int
    ) -> None:
        if len(metrics) >= self._max_metrics:
            # This device's own least recently used series, never another device's.
            oldest = min(metrics, key=lambda name: metrics[name].used)
            del metrics[oldest]
            self._count -= 1
        while self._count >= self.parameters.max_series:
            victim = next(iter(self._series))
            if victim == device_id:
                break  # the only device left; bounded by max_metrics_per_device
            self.forget(victim)
        metrics[metric] = _Series(value, tick)
        self._count += 1

    def forget(self, device_id: str) -> None:
        """Drop every series of a device (it was deleted)."""
        metrics = self._series.pop(device_id, None)
        if metrics:
            self._count -= len(metrics)
        if device_id == self._last_device:
            self._last_device = None
