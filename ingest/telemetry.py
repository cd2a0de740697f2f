"""Telemetry from one device message to the store, the live path, alerts and status.

The one path every transport takes once a payload is parsed and its device known:
the MQTT worker (ingest/worker.py) and `POST /devices/{id}/telemetry`
(ingest/http_intake.py). Each reading is evaluated against the device's alert rules
and the anomaly detector (which marks it `anomaly`), becomes one document carrying
the message's `source` key, and one live event; the device is seen (ONLINE,
lastSeen) and its metric names remembered; the message is queued for storage, where
its receipt is acknowledged once it is stored.
"""

from __future__ import annotations

import logging
from datetime import datetime

from bson import ObjectId
from pymongo.errors import PyMongoError

from core.events import ReadingEvent
from ingest.alerts import AlertEngine
from ingest.devices import DeviceInfo
from ingest.payloads import ParsedReading
from ingest.status import StatusTracker
from ingest.store import PendingMessage, ReadingStore, Receipt
from live.publisher import LivePublisher

logger = logging.getLogger(__name__)


class TelemetryPipeline:
    """Readings of one message: documents, live events, alerts, status, storage."""

    def __init__(
        self,
        *,
        store: ReadingStore,
        live: LivePublisher,
        status: StatusTracker,
        alerts: AlertEngine,
    ) -> None:
        self.store = store
        self.live = live
        self.status = status
        self.alerts = alerts

    async def accept(
        self,
        device: DeviceInfo,
        readings: list[ParsedReading],
        arrived: datetime,
        *,
        source: str,
        receipt: Receipt,
        live_now: bool = True,
    ) -> tuple[PendingMessage, list[bytes]]:
        """Queue the message for storage (waits while the store is full; not at all when
        it has room); its documents and its live events.

        `live_now`: publish the live events at once, before storage (MQTT: the live
        path does not wait for the database). Otherwise they are returned unpublished,
        for `publish` once the message is stored (HTTP: a request answered 503 must
        not have been seen live).
        """
        device_oid = ObjectId(device.device_id)
        documents = []
        events = []
        for reading in readings:
            # Rules and anomaly detection: synchronous, queues any alert work for later.
            anomaly = self.alerts.observe(device, reading.timestamp, reading.values, arrived)
            documents.append(
                {
                    "_id": ObjectId(),
                    "device_id": device_oid,
                    "timestamp": reading.timestamp,
                    "values": [
                        {"metric": metric, "value": value, "unit": unit}
                        for metric, value, unit in reading.values
                    ],
                    "anomaly": anomaly,
                    "source": source,
                }
            )
            event = ReadingEvent(
                device.device_id, device.owner_id, reading.timestamp, anomaly, reading.values
            ).encode()
            if live_now:
                # The live path goes first and does not wait for storage.
                self.live.publish("readings", device.device_id, device.owner_id, event)
            else:
                events.append(event)
        self.status.metrics_seen(
            device.device_id, {name for reading in readings for name, _, _ in reading.values}
        )
        message = PendingMessage(
            delivery=receipt, device_id=device_oid, source=source, documents=documents
        )
        await self.store.put(message)
        await self.note_seen(device, arrived)
        return message, events

    def publish(self, device: DeviceInfo, events: list[bytes]) -> None:
        """Publish live events `accept` returned (never blocks; a full outbox drops)."""
        for event in events:
            self.live.publish("readings", device.device_id, device.owner_id, event)

    async def note_seen(self, device: DeviceInfo, arrived: datetime) -> None:
        """Traffic from `device`: lastSeen, and ONLINE if it was not."""
        try:
            await self.status.seen(device, arrived)
        except PyMongoError as err:
            logger.warning("status of device %s not written: %s", device.device_id, err)
