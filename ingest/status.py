"""Device status: lastSeen coalesced, ONLINE on traffic, OFFLINE on silence or Last Will."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

from beanie import PydanticObjectId
from pymongo import UpdateOne
from pymongo.errors import PyMongoError

from core.events import StatusEvent
from ingest.devices import DeviceDirectory, DeviceInfo
from live.publisher import LivePublisher
from models.devices import Device, DeviceStatus

logger = logging.getLogger(__name__)

# Device.metrics lists what a device reported; a device inventing names forever stops here.
MAX_METRIC_NAMES_PER_DEVICE = 1000
# Reconnect announcements of one device published at most this often (seconds), and
# the devices remembered for it.
RECONNECT_INTERVAL = 5.0
MAX_REMEMBERED_RECONNECTS = 100_000


class StatusTracker:
    """Keeps Device.status and Device.last_seen in step with what devices send."""

    def __init__(
        self,
        directory: DeviceDirectory,
        live: LivePublisher,
        *,
        flush_interval: float,
        offline_after: float,
    ) -> None:
        self._directory = directory
        self._live = live
        self._flush_interval = flush_interval
        self._offline_after = timedelta(seconds=offline_after)
        self._last_seen: dict[str, datetime] = {}
        # Device id -> monotonic time of its last reconnect announcement.
        self._reconnects: dict[str, float] = {}
        # Metric names already written per device, and those waiting for the next flush.
        self._known_metrics: dict[str, set[str]] = {}
        self._new_metrics: dict[str, set[str]] = {}

    async def seen(self, device: DeviceInfo, at: datetime) -> None:
        """Traffic from `device`: remember the time; a silent device comes back ONLINE."""
        previous = self._last_seen.get(device.device_id)
        if previous is None or at > previous:
            self._last_seen[device.device_id] = at
        if device.status != DeviceStatus.ONLINE:
            await self.change(device, DeviceStatus.ONLINE, last_seen=at)

    def metrics_seen(self, device_id: str, names: set[str]) -> None:
        """Remember metric names for Device.metrics; new ones are written at the next flush."""
        known = self._known_metrics.setdefault(device_id, set())
        new = names - known
        if new and len(known) < MAX_METRIC_NAMES_PER_DEVICE:
            known |= new
            self._new_metrics.setdefault(device_id, set()).update(new)

    async def change(
        self, device: DeviceInfo, status: DeviceStatus, *, last_seen: datetime | None
    ) -> bool:
        """Set a status unless it is already set; publish the change if we made it (and
        say whether we did)."""
        update: dict[str, object] = {"$set": {"status": status.value}}
        if last_seen is not None:
            update["$max"] = {"last_seen": last_seen}
        result = await Device.get_pymongo_collection().update_one(
            {"_id": PydanticObjectId(device.device_id), "status": {"$ne": status.value}}, update
        )
        self._directory.remember_status(device.device_id, status)
        if result.modified_count:
            self._publish(device.device_id, device.owner_id, status, last_seen)
            return True
        return False

    def reconnected(self, device: DeviceInfo, at: datetime) -> bool:
        """A device already ONLINE announced itself online again: a reconnect the
        platform did not see (no Last Will, e.g. its broker node died). Published as
        an ONLINE event marked `reconnected`, at most once per RECONNECT_INTERVAL per
        device (a device repeating `online` costs nothing more); whether it was."""
        now = time.monotonic()
        last = self._reconnects.get(device.device_id)
        if last is not None and now - last < RECONNECT_INTERVAL:
            return False
        if len(self._reconnects) >= MAX_REMEMBERED_RECONNECTS:
            self._reconnects.clear()  # a bound, not an LRU: at worst one more event each
        self._reconnects[device.device_id] = now
        event = StatusEvent(
            device.device_id, device.owner_id, DeviceStatus.ONLINE.value, at, reconnected=True
        )
        self._live.publish("status", device.device_id, device.owner_id, event.encode())
        return True

    def _publish(
        self, device_id: str, owner_id: str, status: DeviceStatus, last_seen: datetime | None
    ) -> None:
        event = StatusEvent(device_id, owner_id, status.value, last_seen)
        self._live.publish("status", device_id, owner_id, event.encode())

    async def run_flusher(self) -> None:
        """Write the coalesced lastSeen times every flush interval, one bulk write."""
        while True:
            await asyncio.sleep(self._flush_interval)
            await self.flush()

    async def flush(self) -> None:
        """Write lastSeen of every device heard from since the last flush."""
        pending, self._last_seen = self._last_seen, {}
        metrics, self._new_metrics = self._new_metrics, {}
        if not pending and not metrics:
            return
        operations = []
        for device_id in pending.keys() | metrics.keys():
            update: dict[str, object] = {}
            if device_id in pending:
                update["$max"] = {"last_seen": pending[device_id]}
            if device_id in metrics:
                update["$addToSet"] = {"metrics": {"$each": sorted(metrics[device_id])}}
            operations.append(UpdateOne({"_id": PydanticObjectId(device_id)}, update))
        try:
            await Device.get_pymongo_collection().bulk_write(operations, ordered=False)
        except PyMongoError as err:
            logger.warning("lastSeen of %d devices not written: %s", len(operations), err)
            for device_id, at in pending.items():
                self._last_seen.setdefault(device_id, at)
            for device_id, names in metrics.items():
                self._new_metrics.setdefault(device_id, set()).update(names)

    async def run_sweeper(self) -> None:
        """Mark devices OFFLINE once silent for longer than the offline threshold."""
        interval = max(min(self._offline_after.total_seconds() / 4, 10.0), 0.1)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep()
            except PyMongoError as err:
                logger.warning("offline sweep failed: %s", err)

    async def sweep(self) -> None:
        """One pass: every ONLINE device silent since before the threshold goes OFFLINE."""
        threshold = datetime.now(UTC) - self._offline_after
        silent = Device.find({"status": DeviceStatus.ONLINE.value, "last_seen": {"$lt": threshold}})
        async for device in silent:
            device_id = str(device.id)
            if self._last_seen.get(device_id, threshold) > threshold:
                continue  # heard from it since, not flushed yet
            result = await Device.get_pymongo_collection().update_one(
                {
                    "_id": device.id,
                    "status": DeviceStatus.ONLINE.value,
                    "last_seen": {"$lt": threshold},
                },
                {"$set": {"status": DeviceStatus.OFFLINE.value}},
            )
            self._directory.remember_status(device_id, DeviceStatus.OFFLINE)
            if result.modified_count:
                self._publish(
                    device_id, str(device.organization_id), DeviceStatus.OFFLINE, device.last_seen
                )
