"""Telemetry over HTTP: the worker's parsing, pipeline and storage, inside an API process.

`POST /devices/{id}/telemetry` (api/telemetry.py) hands an authenticated device's
body here. What holds:

- **Same rules, same path.** `ingest.payloads.parse_telemetry` validates; a bad body is
  a counted drop (`ingest_messages_dropped{reason}`) and a 400. Valid readings take
  `ingest.telemetry.TelemetryPipeline`, as MQTT messages do: alert rules and anomaly
  detection, ONLINE and lastSeen, the metric names, storage by `ingest.store`.
- **Acknowledged write.** `submit` returns (202) only once the store has written the
  readings. Its live events are published only then, so nothing answered 503 was
  seen live.
- **Bounded.** At most `concurrency` requests at once per process, checked before the
  body is read; the store's queue is as long, so a full queue and a full house both
  answer `Overloaded` (503, Retry-After) at once, never a wait without end. A queue
  whose oldest message has waited half the timeout sheds new ones at once too: they
  would only time out.
- **Too slow is 503, never 202-then-lost.** A message not stored within `timeout` is
  taken back out of the queue (never stored) when the store has not started on it.
  One whose batch is being written gets one more `timeout` (its outcome is close),
  then 503 although it may still be stored: a client retrying with the same
  `Idempotency-Key` (and body) has it stored once, through the store's redelivery
  check.
- **Per-device rate.** `ingest.rate_limit.DeviceRateLimiter`, with the worker's
  settings, one bucket per device in each process: a device over it gets 429 before
  its body is read. Per process, like the worker's, so that ingest needs no Redis
  round trip and keeps working without Redis; N API processes behind a balancer let
  a device through at up to N times the rate.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

from prometheus_client import Counter, Gauge
from redis.asyncio import Redis

from core.settings import ApiSettings, WorkerSettings
from ingest.alerts import AlertEngine
from ingest.devices import DeviceDirectory, DeviceInfo
from ingest.payloads import Rejected, parse_telemetry
from ingest.rate_limit import DeviceRateLimiter
from ingest.stats import IngestStats
from ingest.status import StatusTracker
from ingest.store import PendingMessage, ReadingStore
from ingest.telemetry import TelemetryPipeline
from live.publisher import LivePublisher
from services.broker_identities import api_instance

logger = logging.getLogger(__name__)

# CLIENT LIST's name of the API's ingest connections (pub/sub feeds, publishes).
HTTP_INGEST_REDIS_NAME = "iotplatform-http-ingest"
# Seconds a client is told to wait when this process is full.
OVERLOADED_RETRY_AFTER = 1


class Refused(Exception):
    """Not accepted now; the client may retry after `retry_after` seconds."""

    status = 503

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class Overloaded(Refused):
    """This process is at its bound, or storage was too slow (503)."""


class DeviceRateLimited(Refused):
    """The device sends faster than its token bucket allows (429)."""

    status = 429


@dataclass(slots=True, eq=False)
class _HttpReceipt:
    """The store's acknowledgement of one request's message."""

    dup: bool  # sent with an Idempotency-Key: maybe stored by an earlier attempt
    stored: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def ack(self) -> None:
        if not self.stored.done():
            self.stored.set_result(None)


def http_source(device_id: str, payload: bytes, idempotency_key: str | None) -> str:
    """The message's `source` key (ingest.store): the same for every retry of one
    request with its Idempotency-Key and body; unique without a key. Scoped to the
    device, so no device's key can stand for another's readings."""
    if idempotency_key is None:
        return secrets.token_hex(16)
    digest = hashlib.sha256(f"http|{device_id}|{idempotency_key}|".encode())
    digest.update(payload)
    return digest.hexdigest()[:32]


class HttpIntake:
    """The API process's ingest: opened in the lifespan, shared by every request."""

    def __init__(
        self, api: ApiSettings, settings: WorkerSettings, redis: Redis, *, stats: IngestStats
    ) -> None:
        """`api`: this API process's settings (its bounds, its name); `settings`: the
        ingest pipeline's, as a worker reads them (batching, limits, alerts)."""
        self.stats = stats
        self._concurrency = api.http_ingest_concurrency
        self._timeout = api.http_ingest_timeout_seconds
        self._in_flight = 0
        self.live = LivePublisher(redis, settings.redis_url, stats)
        self.store = ReadingStore(
            redis=redis,
            stats=stats,
            batch_size=settings.ingest_batch_size,
            batch_delay=settings.ingest_batch_delay_ms / 1000,
            # Never more than the requests in flight: full means "at the bound".
            queue_size=api.http_ingest_concurrency,
            dedup_window=settings.ingest_dedup_window_seconds,
        )
        # Devices are read per request (revocation at once): the directory holds none,
        # the tracker only keeps statuses it writes in step with it.
        self.status = StatusTracker(
            DeviceDirectory(ttl_seconds=0),
            self.live,
            flush_interval=settings.ingest_status_flush_seconds,
            offline_after=settings.ingest_offline_after_seconds,
        )
        self.alerts = AlertEngine(settings, redis, stats, origin=f"api-{api_instance(api)}")
        self.pipeline = TelemetryPipeline(
            store=self.store, live=self.live, status=self.status, alerts=self.alerts
        )
        rate = settings.ingest_device_rate_per_second
        self.limiter = DeviceRateLimiter(rate, settings.ingest_device_burst) if rate > 0 else None
        self._rate_retry_after = max(1, math.ceil(1 / rate)) if rate > 0 else 1
        self.responses = Counter(
            "http_telemetry_responses",
            "POST /devices/{id}/telemetry answers, by HTTP status",
            ["status"],
            registry=stats.registry,
        )
        self.in_flight = Gauge(
            "http_telemetry_in_flight",
            "Telemetry requests being handled",
            registry=stats.registry,
        )
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Self:
        # The worker's background parts, except those the workers do for everyone
        # (the offline sweep, no-data rules): lastSeen written here reaches them.
        self._tasks = [
            asyncio.create_task(self.store.run(), name="http-ingest-store"),
            asyncio.create_task(self.live.run(), name="http-ingest-live"),
            asyncio.create_task(self.status.run_flusher(), name="http-ingest-status"),
            asyncio.create_task(self.alerts.run(no_data=False), name="http-ingest-alerts"),
        ]
        for task in self._tasks:
            task.add_done_callback(_log_failure)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.status.flush()

    @contextmanager
    def slot(self) -> Iterator[None]:
        """One of the process's `concurrency` places, or Overloaded."""
        if self._in_flight >= self._concurrency:
            raise Overloaded("overloaded", OVERLOADED_RETRY_AFTER)
        self._in_flight += 1
        self.in_flight.inc()
        try:
            yield
        finally:
            self._in_flight -= 1
            self.in_flight.dec()

    def check_rate(self, device_id: str) -> None:
        """Spend one of the device's tokens, or DeviceRateLimited (counted `rate_limited`)."""
        if self.limiter is not None and not self.limiter.allow(device_id, time.monotonic()):
            self.stats.drop("rate_limited", device_id)
            raise DeviceRateLimited("rate_limited", self._rate_retry_after)

    async def submit(
        self, device: DeviceInfo, payload: bytes, *, idempotency_key: str | None = None
    ) -> int:
        """Store one telemetry body of `device`; how many readings, once stored.

        Raises `ingest.payloads.Rejected` (counted) for a body that breaks the contract,
        Overloaded when the queue is full or storage takes longer than the timeout."""
        self.stats.received_by_kind["telemetry"].inc()
        arrived = datetime.now(UTC)
        try:
            readings = parse_telemetry(payload, arrived)
        except Rejected as rejected:
            self.stats.drop(rejected.reason, device.device_id)
            raise
        # Full, or so far behind that a message queued now would likely time out: shed
        # it at once rather than after `timeout` (the queue's age, as CoDel does).
        if self.store.full or self.store.oldest_wait > self._timeout / 2:
            raise Overloaded("overloaded", OVERLOADED_RETRY_AFTER)
        receipt = _HttpReceipt(dup=idempotency_key is not None)
        # The store has room: accept queues the message without suspending before it.
        message, events = await self.pipeline.accept(
            device,
            readings,
            arrived,
            source=http_source(device.device_id, payload, idempotency_key),
            receipt=receipt,
            live_now=False,
        )
        if not await self._stored(receipt, message):
            raise Overloaded("storage_timeout", max(1, math.ceil(self._timeout)))
        self.pipeline.publish(device, events)
        return len(readings)

    async def _stored(self, receipt: _HttpReceipt, message: PendingMessage) -> bool:
        """Whether the message was stored within the timeout. Past it, a message still
        queued is withdrawn (never stored); one whose batch is being written gets one
        more timeout, as its outcome is close unless the database fails."""
        for attempt in (1, 2):
            try:
                async with asyncio.timeout(self._timeout):
                    await asyncio.shield(receipt.stored)
                return True
            except TimeoutError:
                if attempt == 1 and self.store.withdraw(message):
                    logger.warning(
                        "telemetry of device %s not stored within %.1f s; withdrawn, 503",
                        message.device_id,
                        self._timeout,
                    )
                    return False
        logger.warning(
            "telemetry of device %s still being written after %.1f s; 503 (it may be stored)",
            message.device_id,
            2 * self._timeout,
        )
        return False


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("HTTP ingest task %s stopped", task.get_name(), exc_info=task.exception())
