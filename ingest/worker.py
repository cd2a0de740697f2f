"""The worker: one source of device messages in (MQTT or AMQP), readings and status out."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import ClassVar

from pymongo.errors import PyMongoError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.backoff import MQTT_RECONNECT, RESUBSCRIBE, RETRY, Backoff
from core.events import DEVICE_CHANGES_CHANNEL
from core.settings import WorkerSettings
from core.topics import CONSUMED, check_handlers
from ingest.alerts import AlertEngine
from ingest.amqp import AmqpSource
from ingest.commands import CommandResultHandler
from ingest.devices import DeviceDirectory, DeviceInfo
from ingest.logs import LogHandler, LogStore
from ingest.mqtt import MqttSubscriber
from ingest.ota import OtaProgressHandler
from ingest.payloads import DeviceTopic, Rejected, parse_status, parse_telemetry, parse_topic
from ingest.rate_limit import DeviceRateLimiter
from ingest.source import Delivery, DeliverySource, SourceError
from ingest.stats import IngestStats
from ingest.status import StatusTracker
from ingest.store import ReadingStore, source_key
from ingest.telemetry import TelemetryPipeline
from ingest.twins import TwinHandler
from live.publisher import LivePublisher
from models.devices import DeviceStatus

logger = logging.getLogger(__name__)

type Handler = Callable[[IngestWorker, Delivery, DeviceInfo, datetime], Awaitable[None]]

TOPICS = tuple(kind.pattern for kind in CONSUMED)


def subscription_filters(settings: WorkerSettings) -> list[tuple[str, int]]:
    """The worker's subscriptions (QoS 1), shared among workers of one group."""
    group = settings.ingest_share_group
    return [
        (f"$share/{group}/{kind.pattern}" if group else kind.pattern, max(kind.qos))
        for kind in CONSUMED
    ]


def amqp_urls(settings: WorkerSettings) -> list[str]:
    """AMQP_URL's URLs (one, or the cluster's nodes comma-separated)."""
    urls = [url.strip() for url in settings.amqp_url.get_secret_value().split(",")]
    return [url for url in urls if url] or ["amqp://127.0.0.1:5672/"]


def topic_of(delivery: Delivery) -> DeviceTopic | Rejected:
    """The device and kind a delivery's topic names, or why it names none."""
    try:
        return parse_topic(delivery.topic)
    except Rejected as rejected:
        return rejected


class IngestWorker:
    """Consumes device messages until cancelled; survives broker, Redis and database outages."""

    def __init__(self, settings: WorkerSettings, redis: Redis, *, stats: IngestStats | None = None):
        self.settings = settings
        self.stats = stats or IngestStats()
        self.redis = redis
        self.connected = asyncio.Event()
        self.directory = DeviceDirectory(ttl_seconds=settings.ingest_device_cache_seconds)
        self.live = LivePublisher(redis, settings.redis_url, self.stats)
        self.store = ReadingStore(
            redis=redis,
            stats=self.stats,
            batch_size=settings.ingest_batch_size,
            batch_delay=settings.ingest_batch_delay_ms / 1000,
            queue_size=settings.ingest_queue_size,
            dedup_window=settings.ingest_dedup_window_seconds,
            rollup_flush_seconds=settings.ingest_status_flush_seconds,
        )
        self.status = StatusTracker(
            self.directory,
            self.live,
            flush_interval=settings.ingest_status_flush_seconds,
            offline_after=settings.ingest_offline_after_seconds,
        )
        self.ota = OtaProgressHandler(redis, self.stats)
        self.logs = LogHandler(
            LogStore(
                live=self.live,
                redis=redis,
                stats=self.stats,
                batch_size=settings.ingest_batch_size,
                batch_delay=settings.ingest_batch_delay_ms / 1000,
                queue_size=settings.ingest_queue_size,
                dedup_window=settings.ingest_dedup_window_seconds,
            ),
            client_id=settings.ingest_client_id,
        )
        # The connection of the moment: twin/get is answered on it.
        self.source: DeliverySource | None = None
        self.twins = TwinHandler(
            redis, max_bytes=settings.twin_max_bytes, publisher=lambda: self.source
        )
        self.command_results = CommandResultHandler(self.live)
        self.alerts = AlertEngine(settings, redis, self.stats, origin=settings.ingest_client_id)
        self.telemetry = TelemetryPipeline(
            store=self.store, live=self.live, status=self.status, alerts=self.alerts
        )
        self._connections = 0  # made so far (AMQP: which node's URL is next)
        rate = settings.ingest_device_rate_per_second
        self.limiter = DeviceRateLimiter(rate, settings.ingest_device_burst) if rate > 0 else None

    async def run(self) -> None:
        """Run every part of the worker until cancelled."""
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.store.run(), name="store")
                tasks.create_task(self.logs.store.run(), name="log-store")
                tasks.create_task(self.live.run(), name="live")
                tasks.create_task(self.status.run_flusher(), name="status-flush")
                tasks.create_task(self.status.run_sweeper(), name="status-sweep")
                tasks.create_task(self._follow_device_changes(), name="device-changes")
                tasks.create_task(self.alerts.run(), name="alerts")
                tasks.create_task(self._consume(), name="source")
        finally:
            self.directory.close()
            await self.status.flush()

    def _client(self) -> DeliverySource:
        """A new connection to where deliveries come from (INGEST_SOURCE)."""
        settings = self.settings
        password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
        if settings.ingest_source == "amqp":
            # The nodes of a cluster in turn: a connection lost to a dead node is made
            # again to the next one.
            urls = amqp_urls(settings)
            url = urls[self._connections % len(urls)]
            self._connections += 1
            return AmqpSource(
                url,
                username=settings.mqtt_username,
                password=password,
                name=settings.ingest_client_id,
                prefetch=settings.amqp_prefetch,
                timeout=10,
                read_pause=settings.ingest_read_pause_ms / 1000,
            )
        return MqttSubscriber(
            settings.mqtt_host,
            settings.mqtt_port,
            client_id=settings.ingest_client_id,
            username=settings.mqtt_username,
            password=password,
            clean_start=False,
            session_expiry=settings.ingest_session_expiry_seconds,
            receive_maximum=settings.ingest_queue_size,
            keepalive=30,
            timeout=10,
            read_pause=settings.ingest_read_pause_ms / 1000,
            subscriptions=subscription_filters(settings),
        )

    async def _consume(self) -> None:
        backoff = Backoff(
            replace(MQTT_RECONNECT, maximum=self.settings.ingest_reconnect_max_seconds)
        )
        while True:
            client = self._client()
            try:
                async with client:
                    self.source = client
                    self.stats.connected.set(1)
                    self.connected.set()
                    backoff.reset()
                    logger.info("connected to %s", client.description)
                    # A batch is what one wakeup read: handled in one go, its live events
                    # in one write, its PUBACKs (after storage) in one write.
                    async for batch in client.batches():
                        topics = [topic_of(delivery) for delivery in batch]
                        if len(batch) > 1:
                            # Devices the cache does not know: one read for the batch.
                            await self.directory.prefetch(
                                t.device_id for t in topics if isinstance(t, DeviceTopic)
                            )
                        for delivery, topic in zip(batch, topics, strict=True):
                            await self._handle(delivery, topic)
            except SourceError as err:
                logger.warning(
                    "broker connection lost (%s); reconnecting in %.1f s", err, backoff.delay
                )
            finally:
                self.source = None
                if self.connected.is_set():
                    self.stats.reconnects.inc()
                self.stats.connected.set(0)
                self.connected.clear()
            await backoff.sleep()

    async def _handle(self, delivery: Delivery, topic: DeviceTopic | Rejected) -> None:
        arrived = datetime.now(UTC)
        if isinstance(topic, Rejected):
            self._drop(delivery, topic, None)
            return
        self.stats.received_by_kind[topic.kind].inc()
        limiter = self.limiter
        # Before the device lookup: a flood costs no database reads. The broker's ACLs
        # make the topic's device id the publisher's own.
        if limiter is not None and not limiter.allow(topic.device_id, time.monotonic()):
            self.stats.drop("rate_limited", topic.device_id)
            delivery.ack()  # deliberately dropped: nothing to redeliver
            return
        device = await self._lookup(topic.device_id)
        if device is None:
            self._drop(delivery, Rejected("unknown_device"), topic.device_id)
            return
        try:
            await self.HANDLERS[topic.kind](self, delivery, device, arrived)
        except Rejected as rejected:
            self._drop(delivery, rejected, device.device_id)

    def _drop(self, delivery: Delivery, rejected: Rejected, device_id: str | None) -> None:
        self.stats.drop(rejected.reason, device_id)
        delivery.ack()  # deliberately dropped: nothing to redeliver

    async def _lookup(self, device_id: str) -> DeviceInfo | None:
        backoff: Backoff | None = None  # made on a failure: this is the per-message path
        while True:
            try:
                return await self.directory.lookup(device_id)
            except PyMongoError as err:
                # Waiting here holds back the stream, which is what an outage should do.
                logger.warning("device lookup failed (%s); retrying", err)
                backoff = backoff or Backoff(RETRY)
                await backoff.sleep()

    async def _telemetry(self, delivery: Delivery, device: DeviceInfo, arrived: datetime) -> None:
        readings = parse_telemetry(delivery.payload, arrived)
        source = source_key(self.settings.ingest_client_id, delivery)
        await self.telemetry.accept(device, readings, arrived, source=source, receipt=delivery)

    async def _status(self, delivery: Delivery, device: DeviceInfo, arrived: datetime) -> None:
        online = parse_status(delivery.payload)
        # A retained "online" may be old news (the broker replays it on subscribe).
        if not (delivery.retain and online):
            status = DeviceStatus.ONLINE if online else DeviceStatus.OFFLINE
            try:
                changed = await self.status.change(
                    device, status, last_seen=arrived if online else None
                )
                if online and not changed:
                    self.status.reconnected(device, arrived)
            except PyMongoError as err:
                logger.warning("status of device %s not written: %s", device.device_id, err)
        delivery.ack()

    async def _ota_progress(self, delivery: Delivery, device: DeviceInfo, _: datetime) -> None:
        await self.ota.handle(delivery, device)

    async def _logs(self, delivery: Delivery, device: DeviceInfo, arrived: datetime) -> None:
        await self.logs.handle(delivery, device, arrived)
        await self.telemetry.note_seen(device, arrived)

    async def _twin_reported(self, delivery: Delivery, device: DeviceInfo, _: datetime) -> None:
        await self.twins.reported(delivery, device)

    async def _twin_get(self, delivery: Delivery, device: DeviceInfo, _: datetime) -> None:
        await self.twins.get(delivery, device)

    async def _command_result(
        self, delivery: Delivery, device: DeviceInfo, arrived: datetime
    ) -> None:
        await self.command_results.handle(delivery, device, arrived)

    # The handler of each topic kind the worker consumes (core.topics), checked below.
    HANDLERS: ClassVar[Mapping[str, Handler]] = {
        "telemetry": _telemetry,
        "status": _status,
        "ota_progress": _ota_progress,
        "logs": _logs,
        "twin_reported": _twin_reported,
        "twin_get": _twin_get,
        "command_result": _command_result,
    }

    async def _follow_device_changes(self) -> None:
        """Forget cached devices the API announces as changed (deleted, rotated)."""
        backoff = Backoff(RESUBSCRIBE)
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(DEVICE_CHANGES_CHANNEL)
                    backoff.reset()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            data = message["data"]
                            self.directory.forget(
                                data.decode() if isinstance(data, bytes) else data
                            )
            except RedisError as err:
                logger.warning("device change feed lost (%s); retrying", err)
                await backoff.sleep()


# At import: a consumed kind without a handler never starts a worker.
check_handlers(IngestWorker.HANDLERS)
