"""Device log lines (devices/{id}/logs): parse, store in batches, then publish live.

A message is acknowledged only once its line is stored, or once it is dropped on
purpose and counted (ingest/log_lines.py: `too_large`, `bad_utf8`, `empty_log`, a
bad time; `log_retained`: a retained line the broker replays on every subscribe,
stored when it was first published). Lines are stored as readings are (ingest/store.py:
the same bounded queue, batches, Redis marks and redelivery check), in `device_logs`,
so a redelivered message is stored once. The live event goes out once the line is
stored: a line seen live is in `deviceLogs`, and a redelivered copy is not shown twice.
The worker's per-device token bucket counts log messages like any other, so a chatty
device cannot flood the collection (ingest/rate_limit.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson import ObjectId

from core.events import LogEvent
from ingest.devices import DeviceInfo
from ingest.log_lines import parse_log
from ingest.payloads import Rejected
from ingest.source import Delivery
from ingest.store import PendingMessage, ReadingStore, source_key
from live.publisher import LivePublisher
from models.device_logs import DeviceLog

LOG_MARK_PREFIX = "ingest:logsrc:"


@dataclass(slots=True, eq=False)
class PendingLog(PendingMessage):
    owner_id: str
    event: bytes  # the LogEvent, published once the line is stored


class LogStore(ReadingStore):
    """ReadingStore's batching and deduplication, into device_logs, publishing on store."""

    model = DeviceLog
    mark_prefix = LOG_MARK_PREFIX

    def __init__(self, *, live: LivePublisher, **options: Any) -> None:
        super().__init__(**options)
        self._live = live

    def _note_depth(self) -> None:
        self._stats.log_queue_depth.set(self.depth)

    def _note_stored(self, count: int) -> None:
        self._stats.logs_stored.inc(count)

    async def _insert(self, documents: list[dict[str, Any]]) -> None:
        collection = self.model.get_pymongo_collection()
        for start in range(0, len(documents), self._batch_size):
            chunk = documents[start : start + self._batch_size]
            started = time.perf_counter()
            await collection.insert_many(chunk, ordered=False)
            self._stats.store_seconds.observe(time.perf_counter() - started)
            self._stats.batch_size.observe(len(chunk))
            self._note_stored(len(chunk))

    def _after_store(self, messages: list[PendingMessage]) -> None:
        for message in messages:
            if isinstance(message, PendingLog):
                self._live.publish("logs", str(message.device_id), message.owner_id, message.event)


class LogHandler:
    """The worker's handler of one log message: parsed here, stored by `store`."""

    def __init__(self, store: LogStore, *, client_id: str) -> None:
        self.store = store
        self._client_id = client_id

    async def handle(self, delivery: Delivery, device: DeviceInfo, arrived: datetime) -> None:
        """Queue the message's line for storage (acknowledged once stored); Rejected
        when it is dropped (the worker counts and acknowledges it)."""
        if delivery.retain:
            raise Rejected("log_retained")
        line = parse_log(delivery.payload, arrived)
        device_oid = ObjectId(device.device_id)
        source = source_key(self._client_id, delivery)
        document = {
            "_id": ObjectId(),
            "device_id": device_oid,
            "timestamp": line.timestamp,
            "level": line.level.value,
            "message": line.message,
            "source": source,
        }
        event = LogEvent(
            device.device_id, device.owner_id, line.timestamp, line.level.value, line.message
        )
        await self.store.put(
            PendingLog(
                delivery=delivery,
                device_id=device_oid,
                source=source,
                documents=[document],
                owner_id=device.owner_id,
                event=event.encode(),
            )
        )
