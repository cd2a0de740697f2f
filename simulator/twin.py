"""The device side of a twin, as a real device does it (used by the simulator).

The device subscribes to devices/{id}/twin/desired (the broker hands it the retained
document at once), applies what it understands, `interval` (seconds between
readings), and reports on devices/{id}/twin/reported what it runs: its interval,
firmware version and uptime. A desired interval it cannot take (not a number, out of
range) is left out: the device keeps reporting the one it runs, and the delta shows
the difference to the user.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, Final

FIRMWARE_VERSION: Final = "1.0.0"
MIN_INTERVAL: Final = 0.05
MAX_INTERVAL: Final = 3600.0


@dataclass
class TwinAgent:
    device_id: str
    # Seconds between readings, the one the device runs now.
    interval: float
    firmware_version: str = FIRMWARE_VERSION
    started: float = field(default_factory=time.monotonic)
    # The newest desired version applied (-1: none yet).
    version: int = -1
    # Set when the interval changes, so a reading loop sleeping on the old one wakes.
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def desired_topic(self) -> str:
        return f"devices/{self.device_id}/twin/desired"

    @property
    def reported_topic(self) -> str:
        return f"devices/{self.device_id}/twin/reported"

    def report(self) -> bytes:
        """What the device runs, as a twin/reported message."""
        state: dict[str, Any] = {
            "interval": self.interval,
            "firmwareVersion": self.firmware_version,
            "uptime": int(time.monotonic() - self.started),
        }
        return json.dumps(state).encode()

    def apply(self, payload: bytes) -> bool:
        """Take a twin/desired message; whether it was new (then report back)."""
        if not payload:
            return False  # cleared: the device was deleted
        try:
            document = json.loads(payload)
            version, desired = document["version"], document["desired"]
        except (ValueError, KeyError, TypeError):
            return False
        if not isinstance(version, int) or not isinstance(desired, dict):
            return False
        if version <= self.version:
            return False  # old news (a repeat, or an answer to twin/get)
        self.version = version
        wanted = desired.get("interval")
        if (
            isinstance(wanted, int | float)
            and not isinstance(wanted, bool)
            and MIN_INTERVAL <= wanted <= MAX_INTERVAL
            and wanted != self.interval
        ):
            self.interval = float(wanted)
            self.changed.set()
        return True

    async def sleep(self, seconds: float) -> bool:
        """Sleep `seconds`, or less when the interval changes meanwhile (then True)."""
        self.changed.clear()
        try:
            async with asyncio.timeout(max(0.0, seconds)):
                await self.changed.wait()
        except TimeoutError:
            return False
        return True
