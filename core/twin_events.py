"""Twin changes as live events on Redis pub/sub, one channel per device.

Published by the API (a change of desired) and by the ingest worker (a device's
report), each after its write; every event carries the whole twin and its
`revision`, so a subscriber shows the newest and skips one that arrives late.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, Self

import orjson


def twin_channel(device_id: str) -> str:
    return f"twin:device:{device_id}"


class EventSink(Protocol):
    """Where events go: the API's bus (live.bus.Bus) or Redis itself in the worker."""

    async def publish(self, channel: str, payload: bytes) -> Any: ...


@dataclass(frozen=True, slots=True)
class TwinEvent:
    device_id: str
    owner_id: str
    desired: dict[str, Any]
    reported: dict[str, Any]
    version: int
    revision: int
    desired_updated_at: datetime | None
    reported_updated_at: datetime | None

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "d": self.device_id,
                "o": self.owner_id,
                "ds": self.desired,
                "rp": self.reported,
                "v": self.version,
                "r": self.revision,
                "du": _instant(self.desired_updated_at),
                "ru": _instant(self.reported_updated_at),
            }
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> Self:
        data = orjson.loads(raw)
        desired, reported = data["ds"], data["rp"]
        if not (isinstance(desired, dict) and isinstance(reported, dict)):
            raise ValueError("twin documents must be objects")
        return cls(
            device_id=data["d"],
            owner_id=data["o"],
            desired=desired,
            reported=reported,
            version=int(data["v"]),
            revision=int(data["r"]),
            desired_updated_at=_parse(data["du"]),
            reported_updated_at=_parse(data["ru"]),
        )


def _instant(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None
