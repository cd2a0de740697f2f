"""Which devices exist, cached briefly: a database read per message would cost too much."""

from __future__ import annotations

import time
from dataclasses import dataclass

from beanie import PydanticObjectId

from models.devices import Device, DeviceStatus


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    device_id: str
    owner_id: str
    status: DeviceStatus


class DeviceDirectory:
    """Known devices by id; unknown ids are remembered too, so a flood costs one read."""

    def __init__(self, *, ttl_seconds: float, max_entries: int = 100_000) -> None:
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self._entries: dict[str, tuple[float, DeviceInfo | None]] = {}

    async def lookup(self, device_id: str) -> DeviceInfo | None:
        """The device, or None when it does not exist (any more)."""
        now = time.monotonic()
        cached = self._entries.get(device_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        # The raw driver and two fields: Beanie's validation would cost more than the read.
        device = await Device.get_pymongo_collection().find_one(
            {"_id": PydanticObjectId(device_id)}, {"owner_id": 1, "status": 1}
        )
        info = (
            DeviceInfo(device_id, str(device["owner_id"]), DeviceStatus(device["status"]))
            if device
            else None
        )
        if len(self._entries) >= self._max_entries:
            self._entries.clear()  # crude, bounded; a refill costs one read per device
        self._entries[device_id] = (now + self._ttl, info)
        return info

    def forget(self, device_id: str) -> None:
        """Drop a cached entry (the API announced a change of this device)."""
        self._entries.pop(device_id, None)

    def remember_status(self, device_id: str, status: DeviceStatus) -> None:
        """Keep the cached status in step with what this worker wrote."""
        cached = self._entries.get(device_id)
        if cached is not None and cached[1] is not None:
            info = cached[1]
            self._entries[device_id] = (
                cached[0],
                DeviceInfo(info.device_id, info.owner_id, status),
            )
