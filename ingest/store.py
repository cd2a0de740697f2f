"""Batched storage of readings, acknowledged only once stored, stored once only.

Deduplication: a time-series collection allows no unique index, so each message
gets a `source` key (hash of the worker's client id, the MQTT packet id and the
payload) that every reading of it carries. Before a batch is inserted its keys are
marked in Redis (an hourly hash: source -> earliest reading time, for a bounded
lookup). A
message redelivered after a crash comes with the DUP flag; only then, and only if
its key is marked, MongoDB is asked whether it was stored. So a crash at any point
stores nothing twice, as long as the redelivery comes within the mark's lifetime
(the dedup window setting) and Redis kept the mark.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

from beanie import Document
from bson import ObjectId
from pymongo.errors import PyMongoError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.backoff import RETRY, Backoff
from ingest import rollups
from ingest.source import Delivery
from ingest.stats import IngestStats
from live.resp import RedisAddress, RespClient, RespError
from models.readings import Reading, hour_key

logger = logging.getLogger(__name__)

MARK_PREFIX = "ingest:src:"


class Receipt(Protocol):
    """What a stored message is acknowledged to: an MQTT delivery (PUBACK), an HTTP
    request waiting to answer 202 (ingest.http_intake)."""

    @property
    def dup(self) -> bool:
        """Whether this message may have been stored already (a redelivery, a retry)."""
        ...

    def ack(self) -> None:
        """Called once the message is stored (or found stored already)."""
        ...


def source_key(client_id: str, delivery: Delivery) -> str:
    """The same for every delivery of one published message to one worker session (MQTT),
    or to any worker of a shared queue (AMQP: `delivery.origin`, ingest.amqp)."""
    digest = hashlib.sha256(f"{delivery.origin or client_id}|{delivery.mid}|".encode())
    digest.update(delivery.payload)
    return digest.hexdigest()[:32]


@dataclass(slots=True, eq=False)
class PendingMessage:
    delivery: Receipt
    device_id: ObjectId
    source: str
    documents: list[dict[str, Any]]
    earliest: datetime = field(init=False)
    queued_at: float = field(init=False)  # monotonic

    def __post_init__(self) -> None:
        self.earliest = min(doc["timestamp"] for doc in self.documents)
        self.queued_at = time.monotonic()


def key_hours(documents: list[dict[str, Any]]) -> None:
    """Give each reading document its `hour` key (models.readings.hour_key)."""
    for doc in documents:
        doc["hour"] = hour_key(doc["device_id"], doc["timestamp"])


async def insert_readings(
    documents: list[dict[str, Any]],
    *,
    chunk_size: int,
    stats: IngestStats | None = None,
    gather: rollups.Accumulator | None = None,
) -> None:
    """Write reading documents in `insert_many` chunks: the one path by which readings are
    stored, the worker's batches and imports (services/imports.py) alike.

    What is kept in step with stored readings (rollups, each device's latest reading:
    ingest/rollups.py) is updated here, per chunk, so that telemetry and backfilled
    imports maintain it the same way. Each document gets its `hour` key here
    (models.readings.hour_key: what pages and rollup rebuilds find an hour by).
    `documents` must be new (not stored before). With `gather` (the worker), the
    rollups are applied at its next flush, else at once.
    """
    collection = Reading.get_pymongo_collection()
    key_hours(documents)
    for start in range(0, len(documents), chunk_size):
        chunk = documents[start : start + chunk_size]
        started = time.perf_counter()
        summary = rollups.Summary.of(chunk)
        # Left behind if anything below fails: the rollups of these hours are rebuilt.
        marker = await rollups.mark(summary)
        await collection.insert_many(chunk, ordered=False)
        if gather is not None:
            gather.add(summary, marker)
        else:
            await rollups.apply(summary)
            await rollups.unmark(marker)
        if stats is not None:
            stats.store_seconds.observe(time.perf_counter() - started)
            stats.batch_size.observe(len(chunk))
            stats.stored.inc(len(chunk))


class ReadingStore:
    """A bounded queue of messages, drained in batches into `insert_many`."""

    # What a subclass changes to store other documents the same way (ingest/logs.py).
    model: ClassVar[type[Document]] = Reading
    mark_prefix: ClassVar[str] = MARK_PREFIX

    def __init__(
        self,
        *,
        redis: Redis,
        stats: IngestStats,
        batch_size: int,
        batch_delay: float,
        queue_size: int,
        dedup_window: int,
        rollup_flush_seconds: float = 2.0,
    ) -> None:
        self._redis = redis
        self._rollups = rollups.Accumulator()
        self._rollup_flush = rollup_flush_seconds
        # The marks go through a lean client where it can reach Redis (plain TCP).
        address = RedisAddress.of(redis)
        self._marker = RespClient(address) if address is not None else None
        self._stats = stats
        self._batch_size = batch_size
        self._batch_delay = batch_delay
        self._dedup_window = dedup_window
        self._capacity = queue_size
        self._pending: deque[PendingMessage] = deque()
        self._readings = 0  # documents in _pending
        # put() wakes the store only once this many readings wait: one while it is
        # idle, a full batch while it gathers one (not once per message).
        self._wake_at = 1
        self._wakeup = asyncio.Event()
        self._room = asyncio.Event()

    @property
    def depth(self) -> int:
        """Messages waiting to be stored."""
        return len(self._pending)

    @property
    def oldest_wait(self) -> float:
        """Seconds the oldest queued message has waited (0 when none waits)."""
        return time.monotonic() - self._pending[0].queued_at if self._pending else 0.0

    @property
    def full(self) -> bool:
        """Whether `put` would wait now (HTTP answers 503 instead of waiting)."""
        return len(self._pending) >= self._capacity

    async def put(self, message: PendingMessage) -> None:
        """Queue a message; waits while the queue is full (backpressure to MQTT).

        Returns without suspending when the queue has room."""
        while len(self._pending) >= self._capacity:
            self._room.clear()
            await self._room.wait()
        self._pending.append(message)
        self._readings += len(message.documents)
        if self._readings >= self._wake_at:
            self._wakeup.set()

    def withdraw(self, message: PendingMessage) -> bool:
        """Take a message back out of the queue, so that it is never stored; False once
        the store has taken it into a batch (it may then be stored)."""
        try:
            self._pending.remove(message)  # identity (eq=False); at most queue_size long
        except ValueError:
            return False
        self._readings -= len(message.documents)
        self._room.set()
        return True

    async def run(self) -> None:
        """Store batches until cancelled; apply their rollups every flush interval."""
        flusher = asyncio.create_task(self._flush_rollups_every(), name="rollup-flush")
        try:
            while True:
                batch = await self._next_batch()
                self._note_depth()
                await self._store_until_done(batch)
                for message in batch:
                    message.delivery.ack()
        finally:
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
            await self.flush_rollups()
            if self._marker is not None:
                self._marker.close()

    async def flush_rollups(self) -> None:
        """Apply the rollups and latest readings of what was stored since the last flush
        (a failure keeps them for the next; the pending records cover a crash)."""
        try:
            await self._rollups.flush()
        except PyMongoError as err:
            logger.warning("rollups not applied (%s); retried at the next flush", err)

    async def _flush_rollups_every(self) -> None:
        while True:
            await asyncio.sleep(self._rollup_flush)
            await self.flush_rollups()

    def _note_depth(self) -> None:
        self._stats.queue_depth.set(len(self._pending))

    def _note_stored(self, count: int) -> None:
        self._stats.stored.inc(count)

    async def _insert(self, documents: list[dict[str, Any]]) -> None:
        """Write a batch's documents: readings by the one path that stores them."""
        await insert_readings(
            documents, chunk_size=self._batch_size, stats=self._stats, gather=self._rollups
        )

    def _after_store(self, messages: list[PendingMessage]) -> None:
        """Called with the messages a batch stored (not the duplicates), before their acks."""

    async def _wait_for(self, readings: int, delay: float | None) -> None:
        """Until `readings` wait, or `delay` seconds (None: no limit) have passed."""
        if self._readings >= readings:
            return
        self._wake_at = readings
        self._wakeup.clear()
        try:
            async with asyncio.timeout(delay):
                await self._wakeup.wait()
        except TimeoutError:
            pass

    async def _next_batch(self) -> list[PendingMessage]:
        """The oldest messages, up to a batch of readings, waiting the batch delay for
        company when fewer are queued."""
        await self._wait_for(1, None)
        await self._wait_for(self._batch_size, self._batch_delay)
        pending = self._pending
        batch = [pending.popleft()]
        count = len(batch[0].documents)
        while pending and count < self._batch_size:
            message = pending.popleft()
            batch.append(message)
            count += len(message.documents)
        self._readings -= count
        self._room.set()
        return batch

    async def _store_until_done(self, batch: list[PendingMessage]) -> None:
        backoff: Backoff | None = None  # made on a failure only
        uncertain = [message for message in batch if message.delivery.dup]
        while True:
            try:
                await self._store(batch, uncertain)
                return
            except PyMongoError as err:
                # Some of the batch may have been written: check them all next time.
                self._stats.store_failures.inc()
                logger.warning("storing %d messages failed (%s); retrying", len(batch), err)
                uncertain = batch
                backoff = backoff or Backoff(RETRY)
                await backoff.sleep()

    async def _store(self, batch: list[PendingMessage], uncertain: list[PendingMessage]) -> None:
        stored = await self._already_stored(uncertain) if uncertain else set()
        fresh = []
        seen: set[str] = set()
        for message in batch:
            source = message.source
            # A copy redelivered after a reconnect may share a batch with the first one,
            # which MongoDB does not hold yet either.
            if source in stored or (message.delivery.dup and source in seen):
                continue
            seen.add(source)
            fresh.append(message)
        self._stats.duplicates.inc(len(batch) - len(fresh))
        if not fresh:
            return
        await self._mark(fresh)
        documents = [doc for message in fresh for doc in message.documents]
        await self._insert(documents)
        self._after_store(fresh)

    async def _mark(self, messages: list[PendingMessage]) -> None:
        # One hash per hour, one HSET per batch: a SET per message cost a tenth of the
        # worker's CPU. The hash outlives the window by an hour, then expires whole.
        key = self.mark_prefix + str(int(time.time() // 3600))
        ttl = self._dedup_window + 3600
        try:
            if self._marker is not None:
                command = [b"HSET", key.encode()]
                for m in messages:
                    command += (m.source.encode(), b"%d" % (m.earliest.timestamp() * 1000))
                await self._marker.execute(tuple(command), (b"EXPIRE", key.encode(), b"%d" % ttl))
                return
            fields = {m.source: int(m.earliest.timestamp() * 1000) for m in messages}
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
                pipe.expire(key, ttl)
                await pipe.execute()
        except (RedisError, RespError) as err:
            # Storing matters more than deduplicating: go on, and say so.
            logger.warning("could not mark %d messages for deduplication: %s", len(messages), err)

    async def _marks(self, sources: list[str]) -> list[int | None]:
        """The mark of each source, looked up in every hour of the window."""
        hour = int(time.time() // 3600)
        hours = range(hour - self._dedup_window // 3600 - 1, hour + 1)
        async with self._redis.pipeline(transaction=False) as pipe:
            for each in hours:
                pipe.hmget(self.mark_prefix + str(each), sources)
            rows = await pipe.execute()
        found: list[int | None] = [None] * len(sources)
        for row in rows:
            for index, value in enumerate(row):
                if value is not None:
                    found[index] = int(value)
        return found

    async def _already_stored(self, messages: list[PendingMessage]) -> set[str]:
        """The sources among `messages` that MongoDB already holds."""
        since: datetime | None
        try:
            marks = await self._marks([m.source for m in messages])
        except RedisError:
            candidates, since = messages, None  # no marks to go by: ask MongoDB about all
        else:
            candidates = [m for m, mark in zip(messages, marks, strict=True) if mark is not None]
            times = [mark for mark in marks if mark is not None]
            since = datetime.fromtimestamp(min(times) / 1000, UTC) if times else None
        if not candidates:
            return set()
        query: dict[str, Any] = {
            "device_id": {"$in": list({m.device_id for m in candidates})},
            "source": {"$in": [m.source for m in candidates]},
        }
        if since is not None:
            query["timestamp"] = {"$gte": since}
        found = await self.model.get_pymongo_collection().distinct("source", query)
        return set(found)
