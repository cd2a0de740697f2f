"""Which devices exist, cached: a database read per message would cost too much.

An entry past its age is still served while a background read refreshes it: a
refresh on the message path held that message (and every one behind it) for a
read from a database busy storing batches, the latency tail of `bench.ingest`
(p99 403 ms at 500 msg/s, 12.8 ms with the cache held). Ids the cache does not
know at all are read before their messages are handled, a batch's worth in one
`$in` query. Deletions do not wait for either: the API announces them and
`forget` drops the entry at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from bson import ObjectId
from bson.errors import InvalidId
from pymongo.errors import PyMongoError

from models.devices import Device, DeviceStatus

logger = logging.getLogger(__name__)

# A failed background refresh is tried again after this long, not on every message.
REFRESH_RETRY_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    device_id: str
    # The device's organization (what live events, alerts and access checks name as
    # its owner: docs/access.md); its owning user's before the migration stored it.
    owner_id: str
    status: DeviceStatus


class DeviceDirectory:
    """Known devices by id; unknown ids are remembered too, so a flood costs one read."""

    def __init__(self, *, ttl_seconds: float, max_entries: int = 100_000) -> None:
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self._entries: dict[str, tuple[float, DeviceInfo | None]] = {}
        self._stale: set[str] = set()
        self._refresher: asyncio.Task[None] | None = None
        # Forgotten while a read was under way: that read's answer may predate the
        # change, and must not bring the entry back.
        self._forgets = 0
        self._forgotten_at: dict[str, int] = {}
        self._reads_in_flight = 0

    async def lookup(self, device_id: str) -> DeviceInfo | None:
        """The device, or None when it does not exist (any more). Raises PyMongoError
        only when the id is not cached at all and the read fails."""
        cached = self._entries.get(device_id)
        if cached is None:
            await self.load([device_id])
            cached = self._entries.get(device_id)
            if cached is None:  # forgotten while it was read: read it again
                return await self.lookup(device_id)
        elif cached[0] <= time.monotonic():
            self._refresh_later(device_id)
        return cached[1]

    async def prefetch(self, device_ids: Iterable[str | None]) -> None:
        """Read the ids the cache does not know, in one query; errors are left to
        `lookup`, which reads (and retries) the ones still missing."""
        entries = self._entries
        unknown = {d for d in device_ids if d is not None and d not in entries}
        if len(unknown) > 1:
            try:
                await self.load(unknown)
            except PyMongoError as err:
                logger.debug("device prefetch failed: %s", err)

    async def load(self, device_ids: Iterable[str]) -> None:
        """Read these devices (ids that are not ObjectIds do not exist) into the cache."""
        wanted: dict[ObjectId, str] = {}
        missing: list[str] = []
        for device_id in device_ids:
            try:
                wanted[ObjectId(device_id)] = device_id
            except (InvalidId, TypeError):
                missing.append(device_id)
        found: dict[str, DeviceInfo] = {}
        started = self._forgets
        self._reads_in_flight += 1
        try:
            if wanted:
                # The raw driver and two fields: Beanie's validation would cost more
                # than the read.
                cursor = Device.get_pymongo_collection().find(
                    {"_id": {"$in": list(wanted)}},
                    {"owner_id": 1, "organization_id": 1, "status": 1},
                )
                async for doc in cursor:
                    device_id = wanted[doc["_id"]]
                    # Not migrated yet (the API migrates at start): its owner's personal
                    # organization, whose id is the owner's.
                    organization = doc.get("organization_id", doc["owner_id"])
                    found[device_id] = DeviceInfo(
                        device_id, str(organization), DeviceStatus(doc["status"])
                    )
        finally:
            self._reads_in_flight -= 1
        expires = time.monotonic() + self._ttl
        if len(self._entries) + len(wanted) + len(missing) > self._max_entries:
            self._entries.clear()  # crude, bounded; a refill costs one read per batch
        for device_id in [*wanted.values(), *missing]:
            if self._forgotten_at.get(device_id, -1) >= started:
                continue
            self._entries[device_id] = (expires, found.get(device_id))
        if not self._reads_in_flight:
            self._forgotten_at.clear()

    def forget(self, device_id: str) -> None:
        """Drop a cached entry (the API announced a change of this device)."""
        self._entries.pop(device_id, None)
        self._stale.discard(device_id)
        if self._reads_in_flight:
            self._forgotten_at[device_id] = self._forgets
            self._forgets += 1

    def remember_status(self, device_id: str, status: DeviceStatus) -> None:
        """Keep the cached status in step with what this worker wrote."""
        cached = self._entries.get(device_id)
        if cached is not None and cached[1] is not None:
            info = cached[1]
            self._entries[device_id] = (
                cached[0],
                DeviceInfo(info.device_id, info.owner_id, status),
            )

    def close(self) -> None:
        """Stop a background refresh under way."""
        if self._refresher is not None:
            self._refresher.cancel()

    def _refresh_later(self, device_id: str) -> None:
        self._stale.add(device_id)
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.create_task(self._refresh())

    async def _refresh(self) -> None:
        # Ids going stale during a read are taken by the next turn of this loop.
        while self._stale:
            ids, self._stale = self._stale, set()
            try:
                await self.load(ids)
            except PyMongoError as err:
                logger.warning("refreshing %d cached devices failed: %s", len(ids), err)
                retry = time.monotonic() + REFRESH_RETRY_SECONDS
                for device_id in ids:
                    cached = self._entries.get(device_id)
                    if cached is not None:
                        self._entries[device_id] = (retry, cached[1])
                return
