"""The worker's alerting: rules cached per device, evaluated per reading, raised off the hot path.

- **Cache.** Every enabled rule is held in memory per device, loaded once at start and
  reloaded for one device whenever the API announces a change (ALERT_RULES_CHANNEL,
  DEVICE_CHANGES_CHANNEL); whole whenever the Redis subscription comes back (notices may
  have been missed) and every `alert_rule_refresh_seconds` (the safety net). Readings of
  a device whose rules are being reloaded after a change are held (bounded) and
  evaluated once the new rules are in, so a rule applies from the first reading after
  its creation has been announced.
- **Hot path.** `observe` is synchronous: the anomaly detector, a dictionary lookup, and
  for each metric with rules a few comparisons (ingest.thresholds). A transition queues
  work for the raiser; a full queue drops it (counted) and undoes the transition, so the
  next reading tries again.
- **Raiser** (ingest/alert_raiser.py). One task performs the work in order: insert the
  alert (a sparse unique index on open_key keeps one open alert per rule and device
  across all workers), or clear it; announce it on Redis; hand it to the webhook sender.
- **No data.** A sweeper checks the devices with no-data rules against the last message
  this worker saw and, before raising, against Device.last_seen in MongoDB, which every
  worker updates: a device heard by another worker is not silent.
- **Several workers.** Each keeps its own rule states and detector. Alert events on
  `alerts:all` keep the open/closed state in step (a worker ignores its own), but
  duration timers and EWMA estimates see only the share of a device's readings that
  reached this worker (docs/alerts.md).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass
from datetime import datetime

from bson import ObjectId
from pymongo.errors import PyMongoError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.backoff import RESUBSCRIBE, RETRY, Backoff
from core.events import (
    ALERT_RULES_CHANNEL,
    ALERTS_ALL_CHANNEL,
    DEVICE_CHANGES_CHANNEL,
    AlertEvent,
)
from core.settings import WorkerSettings
from ingest.alert_raiser import AlertRaiser, AlertWork
from ingest.alert_rules import DeviceRules, Entry, device_rules, fetch_rules
from ingest.anomaly import AnomalyDetector, AnomalyParameters, Score
from ingest.devices import DeviceInfo
from ingest.stats import IngestStats
from ingest.thresholds import RAISE, describe, silent, step
from ingest.webhooks import WebhookOptions, WebhookSender
from models.devices import Device

logger = logging.getLogger(__name__)

# Readings held while their device's rules reload; beyond, they skip rule evaluation.
HOLD_MAX = 10_000
LOAD_BATCH = 100
_MAX_ANOMALY_MARKS = 100_000

type Values = tuple[tuple[str, float, str | None], ...]


@dataclass(frozen=True, slots=True)
class _Held:
    device: DeviceInfo
    timestamp: datetime
    values: Values
    arrived: datetime


class AlertEngine:
    """Rules, anomaly detection, alert raising and webhooks of one worker."""

    def __init__(self, settings: WorkerSettings, redis: Redis, stats: IngestStats, *, origin: str):
        self._settings = settings
        self._redis = redis
        self._stats = stats
        self._origin = origin
        self.detector: AnomalyDetector | None = None
        if settings.anomaly_detection:
            self.detector = AnomalyDetector(
                AnomalyParameters(
                    alpha=settings.anomaly_alpha,
                    z_threshold=settings.anomaly_z_threshold,
                    warmup=settings.anomaly_warmup,
                    min_std_ratio=settings.anomaly_min_std_ratio,
                    min_std=settings.anomaly_min_std,
                    max_series=settings.anomaly_max_series,
                    max_metrics_per_device=settings.anomaly_max_metrics_per_device,
                )
            )
        self.webhooks = WebhookSender(
            stats,
            WebhookOptions(
                timeout=settings.webhook_timeout_seconds,
                max_attempts=settings.webhook_max_attempts,
                retry_base=settings.webhook_retry_base_seconds,
                outbox_size=settings.webhook_outbox_size,
                concurrency=settings.webhook_concurrency,
                allow_private=settings.webhook_allow_private_networks,
                response_max_bytes=settings.webhook_response_max_bytes,
                concurrency_per_owner=settings.webhook_concurrency_per_owner,
                outbox_per_owner=settings.webhook_outbox_per_owner,
            ),
        )
        self.loaded = asyncio.Event()  # set once every rule has been loaded
        self._devices: dict[str, DeviceRules] = {}
        self._no_data_devices: set[str] = set()
        self._last_seen: dict[str, float] = {}
        self._hold_all = True  # until the first load
        self._held_devices: set[str] = set()
        self._held: list[_Held] = []
        self._wanted: set[str] = set()
        self._want_all = True
        self._wake = asyncio.Event()
        self.raiser = AlertRaiser(settings, redis, stats, self.webhooks, origin=origin)
        self._anomaly_marks: dict[str, float] = {}

    # ------------------------------------------------------------ the hot path

    def observe(
        self, device: DeviceInfo, timestamp: datetime, values: Values, arrived: datetime
    ) -> bool:
        """Evaluate one reading (never waits); whether it is anomalous."""
        anomaly = False
        detector = self.detector
        if detector is not None:
            for metric, value, _ in values:
                score = detector.observe(device.device_id, metric, value)
                if score is not None:
                    anomaly = True
                    self._anomalous(device, metric, value, score)
            if anomaly:
                self._stats.anomalies.inc()
        device_id = device.device_id
        if self._hold_all or device_id in self._held_devices:
            self._hold(_Held(device, timestamp, values, arrived))
            return anomaly
        entry = self._devices.get(device_id)
        if entry is not None:
            self._evaluate(entry, device, timestamp, values, arrived)
        return anomaly

    def _evaluate(
        self,
        entry: DeviceRules,
        device: DeviceInfo,
        timestamp: datetime,
        values: Values,
        arrived: datetime,
    ) -> None:
        # datetime.timestamp() costs more than the rules themselves: only when needed.
        if entry.no_data:
            self._last_seen[device.device_id] = arrived.timestamp()
            for rule, state in entry.no_data:
                if state.open:
                    state.open = False
                    self._queue(AlertWork("clear", device.device_id, device.owner_id, rule, state))
        thresholds = entry.thresholds
        if thresholds:
            at: float | None = None
            for metric, value, _ in values:
                rules = thresholds.get(metric)
                if rules is None:
                    continue
                if at is None:
                    at = timestamp.timestamp()
                for rule, state in rules:
                    action = step(rule, state, value, at)
                    if action is not None:
                        message = describe(rule, value) if action == RAISE else ""
                        self._queue(
                            AlertWork(
                                action,
                                device.device_id,
                                device.owner_id,
                                rule,
                                state,
                                metric,
                                value,
                                message,
                            )
                        )

    def _anomalous(self, device: DeviceInfo, metric: str, value: float, score: Score) -> None:
        settings = self._settings
        if not settings.anomaly_alerts:
            return
        now = time.monotonic()
        last = self._anomaly_marks.get(device.device_id)
        if last is not None and now - last < settings.anomaly_alert_interval_seconds:
            return
        if len(self._anomaly_marks) >= _MAX_ANOMALY_MARKS:
            self._anomaly_marks.clear()
        self._anomaly_marks[device.device_id] = now
        message = (
            f"{metric} = {value:g} is anomalous "
            f"(z = {score.z:+.1f} against {score.mean:g} ± {score.std:g})"
        )
        self._queue(
            AlertWork(
                "anomaly",
                device.device_id,
                device.owner_id,
                metric=metric,
                value=value,
                message=message,
            )
        )

    def _queue(self, work: AlertWork) -> None:
        if not self.raiser.submit(work) and work.state is not None:
            # Undone, so the next reading makes the same transition again.
            work.state.open = work.action == "clear"

    def _hold(self, held: _Held) -> None:
        if len(self._held) >= HOLD_MAX:
            self._stats.alert_evaluations_skipped.inc()
            return
        self._held.append(held)

    # ------------------------------------------------------------ the rule cache

    def rule_ids(self, device_id: str) -> set[str]:
        """The ids of the device's rules this worker applies now."""
        entry = self._devices.get(device_id)
        return set(entry.by_id) if entry is not None else set()

    def _request(self, device_id: str, *, hold: bool) -> None:
        self._wanted.add(device_id)
        if hold:
            self._held_devices.add(device_id)
        self._wake.set()

    def _request_all(self) -> None:
        self._want_all = True
        self._wake.set()

    async def _run_refresh(self) -> None:
        """Reload every rule now and then: the safety net under the change notices."""
        while True:
            await asyncio.sleep(self._settings.alert_rule_refresh_seconds)
            self._request_all()

    async def _run_loader(self) -> None:
        backoff = Backoff(RETRY)
        while True:
            await self._wake.wait()
            self._wake.clear()
            full, self._want_all = self._want_all, False
            devices, self._wanted = self._wanted, set()
            try:
                if full:
                    await self._load_all()
                for chunk in itertools.batched(sorted(devices), LOAD_BATCH, strict=False):
                    await self._load_devices(chunk)
                backoff.reset()
            except PyMongoError as err:
                logger.warning(
                    "alert rules not loaded (%s); retrying in %.1f s", err, backoff.delay
                )
                self._want_all |= full
                self._wanted |= devices
                self._wake.set()
                await backoff.sleep()
                continue
            self._replay()

    async def _load_all(self) -> None:
        specs, open_keys = await fetch_rules({})
        devices = device_rules(specs, open_keys, self._devices)
        self._devices = devices
        self._no_data_devices = {d for d, entry in devices.items() if entry.no_data}
        for device_id in self._last_seen.keys() - self._no_data_devices:
            del self._last_seen[device_id]
        self._hold_all = False
        self.loaded.set()
        logger.info("alert rules loaded: %d rules on %d devices", len(specs), len(devices))

    async def _load_devices(self, device_ids: tuple[str, ...]) -> None:
        valid = [d for d in device_ids if ObjectId.is_valid(d)]
        specs, open_keys = await fetch_rules({"device_id": {"$in": [ObjectId(d) for d in valid]}})
        devices = device_rules(specs, open_keys, self._devices)
        for device_id in device_ids:
            if device_id in self._wanted:
                continue  # changed again meanwhile: the next pass installs it
            entry = devices.get(device_id)
            if entry is None:
                self._devices.pop(device_id, None)
            else:
                self._devices[device_id] = entry
            if entry is not None and entry.no_data:
                self._no_data_devices.add(device_id)
            else:
                self._no_data_devices.discard(device_id)
                self._last_seen.pop(device_id, None)
            self._held_devices.discard(device_id)

    def _replay(self) -> None:
        """Evaluate the held readings whose devices' rules are in now."""
        if not self._held:
            return
        held, self._held = self._held, []
        for item in held:
            device_id = item.device.device_id
            if self._hold_all or device_id in self._held_devices:
                self._held.append(item)
                continue
            entry = self._devices.get(device_id)
            if entry is not None:
                self._evaluate(entry, item.device, item.timestamp, item.values, item.arrived)

    # ------------------------------------------------------------ following changes

    async def _follow(self) -> None:
        """Reload rules the API announces as changed; track alerts others open and clear."""
        backoff = Backoff(RESUBSCRIBE)
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(
                        ALERT_RULES_CHANNEL, DEVICE_CHANGES_CHANNEL, ALERTS_ALL_CHANNEL
                    )
                    # Changes made while not subscribed were missed: reload everything.
                    self._request_all()
                    backoff.reset()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._on_message(message["channel"], message["data"])
            except RedisError as err:
                logger.warning(
                    "alert change feed lost (%s); retrying in %.1f s", err, backoff.delay
                )
                await backoff.sleep()

    def _on_message(self, channel: bytes | str, data: bytes | str) -> None:
        name = channel.decode() if isinstance(channel, bytes) else channel
        if name == ALERTS_ALL_CHANNEL:
            self._on_alert_event(data)
            return
        device_id = data.decode() if isinstance(data, bytes) else data
        if ObjectId.is_valid(device_id):
            self._request(device_id, hold=True)

    def _on_alert_event(self, raw: bytes | str) -> None:
        try:
            event = AlertEvent.decode(raw)
        except (KeyError, ValueError, TypeError) as err:
            logger.warning("undecodable alert event ignored: %s", err)
            return
        if event.origin == self._origin or event.rule_id is None:
            return
        entry = self._devices.get(event.device_id)
        pair = entry.by_id.get(event.rule_id) if entry is not None else None
        if pair is not None:
            pair[1].open = event.change != "cleared"

    @property
    def pending_work(self) -> int:
        """Raise/clear work queued or in progress (0: all decided so far is in MongoDB)."""
        return self.raiser.pending

    # ------------------------------------------------------------ no data

    async def _run_no_data(self) -> None:
        while True:
            await asyncio.sleep(self._settings.alert_no_data_check_seconds)
            try:
                await self.sweep_no_data()
            except PyMongoError as err:
                logger.warning("no-data check failed: %s", err)

    async def sweep_no_data(self) -> None:
        """Raise the no-data rules of devices silent for too long, here and in MongoDB."""
        now = time.time()
        candidates: list[Entry] = []
        for device_id in self._no_data_devices:
            entry = self._devices.get(device_id)
            if entry is None:
                continue
            local = self._last_seen.get(device_id)
            candidates.extend(
                p for p in entry.no_data if not p[1].open and silent(p[0], local, now)
            )
        if not candidates:
            return
        device_ids = sorted({spec.device_id for spec, _ in candidates})
        seen: dict[str, float | None] = {}
        for chunk in itertools.batched(device_ids, 500, strict=False):
            cursor = Device.get_pymongo_collection().find(
                {"_id": {"$in": [ObjectId(d) for d in chunk]}}, {"last_seen": 1}
            )
            async for raw in cursor:
                last = raw.get("last_seen")
                seen[str(raw["_id"])] = last.timestamp() if last is not None else None
        now = time.time()
        for spec, state in candidates:
            if spec.device_id not in seen:
                continue  # deleted
            stored = seen[spec.device_id]
            local = self._last_seen.get(spec.device_id)
            last = max((t for t in (stored, local) if t is not None), default=None)
            if state.open or not silent(spec, last, now):
                continue
            state.open = True
            message = f"no data for {spec.no_data_seconds:g} s"
            self._queue(
                AlertWork("raise", spec.device_id, spec.owner_id, spec, state, message=message)
            )

    # ------------------------------------------------------------ running

    async def run(self, *, no_data: bool = True) -> None:
        """Load rules, follow changes, raise alerts, check silence, send webhooks.

        `no_data` False: leave no-data rules to the workers (the API's engine sees only
        HTTP telemetry; the workers' check reads Device.last_seen, which it moves too)."""
        async with self.webhooks, asyncio.TaskGroup() as tasks:
            self._wake.set()
            tasks.create_task(self._run_loader(), name="alert-rules")
            tasks.create_task(self._follow(), name="alert-changes")
            tasks.create_task(self.raiser.run(), name="alert-raiser")
            if no_data:
                tasks.create_task(self._run_no_data(), name="alert-no-data")
            tasks.create_task(self._run_refresh(), name="alert-refresh")
