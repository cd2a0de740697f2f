"""Live events on Redis pub/sub: channel names and compact JSON encodings.

The ingest worker publishes; every API process subscribes. Each event names the
device's owner, so a subscriber can be authorised per event without a read.

Channels (one event is published on each of its three):
    readings:device:<device id>    one device
    readings:owner:<owner id>      every device of one user (readingAdded(deviceId: null))
    readings:all                   every device (an ADMIN's readingAdded(deviceId: null))
  and likewise status:device:<id>, status:owner:<id>, status:all for status changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Self

type Kind = Literal["readings", "status"]


def device_channel(kind: Kind, device_id: str) -> str:
    return f"{kind}:device:{device_id}"


def owner_channel(kind: Kind, owner_id: str) -> str:
    return f"{kind}:owner:{owner_id}"


def all_channel(kind: Kind) -> str:
    return f"{kind}:all"


def channels_for(kind: Kind, device_id: str, owner_id: str) -> tuple[str, str, str]:
    """Every channel an event of this device is published on."""
    return device_channel(kind, device_id), owner_channel(kind, owner_id), all_channel(kind)


@dataclass(frozen=True, slots=True)
class ReadingEvent:
    device_id: str
    owner_id: str
    timestamp: datetime
    anomaly: bool
    # (metric, value, unit)
    values: tuple[tuple[str, float, str | None], ...]

    def encode(self) -> bytes:
        return json.dumps(
            {
                "d": self.device_id,
                "o": self.owner_id,
                "t": self.timestamp.isoformat(),
                "a": self.anomaly,
                "v": [list(value) for value in self.values],
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, raw: bytes | str) -> Self:
        data = json.loads(raw)
        return cls(
            device_id=data["d"],
            owner_id=data["o"],
            timestamp=datetime.fromisoformat(data["t"]),
            anomaly=bool(data["a"]),
            values=tuple((m, float(v), u) for m, v, u in data["v"]),
        )


@dataclass(frozen=True, slots=True)
class StatusEvent:
    device_id: str
    owner_id: str
    status: str  # DeviceStatus value
    last_seen: datetime | None

    def encode(self) -> bytes:
        return json.dumps(
            {
                "d": self.device_id,
                "o": self.owner_id,
                "s": self.status,
                "l": self.last_seen.isoformat() if self.last_seen else None,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, raw: bytes | str) -> Self:
        data = json.loads(raw)
        return cls(
            device_id=data["d"],
            owner_id=data["o"],
            status=data["s"],
            last_seen=datetime.fromisoformat(data["l"]) if data["l"] else None,
        )


# The API announces device lifecycle changes here; the worker drops its cache entry.
DEVICE_CHANGES_CHANNEL = "devices:changed"
