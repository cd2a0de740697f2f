"""Device twins: what users want a device to be (desired) and what it says it is (reported).

One document per device that ever had either, `_id` the device's id, in a collection of
its own: devices are read often (lists, the worker's cache) and a twin may weigh twice
TWIN_MAX_BYTES. Every write is guarded by `revision` (services.twins).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from beanie import Document
from pydantic import Field


class DeviceTwin(Document):
    desired: dict[str, Any] = Field(default_factory=dict)
    reported: dict[str, Any] = Field(default_factory=dict)
    # Grows by one on every change of desired (the contract's version).
    version: int = 0
    # Grows by one on every change of either side: the guard of every update, and the
    # order of live events.
    revision: int = 0
    desired_updated_at: datetime | None = None
    reported_updated_at: datetime | None = None

    class Settings:
        name = "device_twins"
