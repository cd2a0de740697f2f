"""Live events on Redis pub/sub: channel names and compact JSON encodings.

The ingest worker publishes; every API process subscribes. Each event names the
device's owner -- its organization (`owner_id` carries the organization's id; a personal
organization's id is its user's) -- so a subscriber can be authorised per event without
a read.

Channels (one event is published on each of its three):
    readings:device:<device id>    one device
    readings:owner:<organization id>  every device of one organization
                                   (readingAdded(deviceId: null) of its members)
    readings:all                   every device (an ADMIN's readingAdded(deviceId: null))
  and likewise status:device:<id>, status:owner:<id>, status:all for status changes,
  logs:device:<id>, logs:owner:<id>, logs:all for device log lines,
  and commands:device:<id>, commands:owner:<id>, commands:all for command state changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Self

import orjson

type Kind = Literal["readings", "status", "logs", "commands"]


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
        return orjson.dumps(
            {
                "d": self.device_id,
                "o": self.owner_id,
                "t": self.timestamp.isoformat(),
                "a": self.anomaly,
                "v": self.values,  # tuples: JSON arrays
            }
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> Self:
        data = orjson.loads(raw)
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
    # ONLINE announced again by a device the platform still had ONLINE: a reconnect it
    # did not see as one (its broker node died, no Last Will). Not a status change, so
    # deviceStatusChanged skips it; the API re-sends what the device must have.
    reconnected: bool = False

    def encode(self) -> bytes:
        data: dict[str, object] = {
            "d": self.device_id,
            "o": self.owner_id,
            "s": self.status,
            "l": self.last_seen.isoformat() if self.last_seen else None,
        }
        if self.reconnected:
            data["r"] = 1
        return orjson.dumps(data)

    @classmethod
    def decode(cls, raw: bytes | str) -> Self:
        data = orjson.loads(raw)
        return cls(
            device_id=data["d"],
            owner_id=data["o"],
            status=data["s"],
            last_seen=datetime.fromisoformat(data["l"]) if data["l"] else None,
            reconnected=bool(data.get("r")),
        )


# The API announces device lifecycle changes here; the worker drops its cache entry.
DEVICE_CHANGES_CHANNEL = "devices:changed"

# A user's role or password changed (payload: the user id): every API process closes
# that user's WebSockets (graph.sessions).
USERS_REVOKED_CHANNEL = "users:revoked"


# ---------------------------------------------------------------- alerts
# The API announces a device's rule changes here (payload: the device id); workers reload.
ALERT_RULES_CHANNEL = "alert-rules:changed"
ALERTS_ALL_CHANNEL = "alerts:all"

type AlertChange = Literal["raised", "acknowledged", "cleared"]


def alert_device_channel(device_id: str) -> str:
    return f"alerts:device:{device_id}"


def alert_owner_channel(owner_id: str) -> str:
    return f"alerts:owner:{owner_id}"


def alert_channels(device_id: str, owner_id: str) -> tuple[str, str, str]:
    """Every channel an alert event is published on (workers follow the last one)."""
    return alert_device_channel(device_id), alert_owner_channel(owner_id), ALERTS_ALL_CHANNEL


def _instant(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_instant(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One alert raised, acknowledged or cleared; `origin` names the process that
    published it (a worker ignores its own)."""

    change: AlertChange
    alert_id: str
    device_id: str
    owner_id: str
    rule_id: str | None
    kind: str  # AlertKind value
    metric: str | None
    value: float | None
    message: str
    severity: str  # Severity value
    state: str  # AlertState value
    raised_at: datetime
    acknowledged_at: datetime | None
    cleared_at: datetime | None
    origin: str

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "c": self.change,
                "i": self.alert_id,
                "d": self.device_id,
                "o": self.owner_id,
                "r": self.rule_id,
                "k": self.kind,
                "m": self.metric,
                "v": self.value,
                "g": self.message,
                "s": self.severity,
                "st": self.state,
                "ra": self.raised_at.isoformat(),
                "aa": _instant(self.acknowledged_at),
                "ca": _instant(self.cleared_at),
                "src": self.origin,
            }
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> Self:
        data = orjson.loads(raw)
        change = data["c"]
        if change not in ("raised", "acknowledged", "cleared"):
            raise ValueError(f"unknown alert change {change!r}")
        value = data["v"]
        return cls(
            change=change,
            alert_id=data["i"],
            device_id=data["d"],
            owner_id=data["o"],
            rule_id=data["r"],
            kind=data["k"],
            metric=data["m"],
            value=float(value) if value is not None else None,
            message=data["g"],
            severity=data["s"],
            state=data["st"],
            raised_at=datetime.fromisoformat(data["ra"]),
            acknowledged_at=_parse_instant(data["aa"]),
            cleared_at=_parse_instant(data["ca"]),
            origin=data["src"],
        )


# ---------------------------------------------------------------- firmware / OTA
# One channel per rollout: every state change of its devices (dispatch, device
# reports, timeouts, cancellation). Rollouts are ADMIN operations, so the events
# are not split by owner; each still names the device's owner.
def ota_update_channel(update_id: str) -> str:
    return f"ota:update:{update_id}"


@dataclass(frozen=True, slots=True)
class OtaProgressEvent:
    update_id: str
    device_id: str
    owner_id: str
    state: str  # TargetState value
    progress: int
    error: str | None
    at: datetime

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "u": self.update_id,
                "d": self.device_id,
                "o": self.owner_id,
                "s": self.state,
                "p": self.progress,
                "e": self.error,
                "t": self.at.isoformat(),
            }
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> Self:
        data = orjson.loads(raw)
        return cls(
            update_id=data["u"],
            device_id=data["d"],
            owner_id=data["o"],
            state=data["s"],
            progress=int(data["p"]),
            error=data["e"],
            at=datetime.fromisoformat(data["t"]),
        )


# ---------------------------------------------------------------- device logs
@dataclass(frozen=True, slots=True)
class LogEvent:
    """One stored log line of a device (models.device_logs), on the "logs" channels."""

    device_id: str
    owner_id: str
    timestamp: datetime
    level: str  # LogLevel value
    message: str

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "d": self.device_id,
                "o": self.owner_id,
                "t": self.timestamp.isoformat(),
                "l": self.level,
                "m": self.message,
            }
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> Self:
        data = orjson.loads(raw)
        return cls(
            device_id=data["d"],
            owner_id=data["o"],
            timestamp=datetime.fromisoformat(data["t"]),
            level=data["l"],
            message=data["m"],
        )


# ---------------------------------------------------------------- commands
@dataclass(frozen=True, slots=True)
class CommandEvent:
    """A command's state after one change (sent, answered, expired, cancelled), whole:
    a commandUpdated subscriber may select any field. Published by the API and the
    worker on the `commands` channels of its device."""

    command_id: str
    device_id: str
    owner_id: str
    name: str
    params_json: str
    state: str  # CommandState value
    result_json: str | None
    error: str | None
    created_at: datetime
    sent_at: datetime | None
    completed_at: datetime | None
    expires_at: datetime

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "i": self.command_id,
                "d": self.device_id,
                "o": self.owner_id,
                "n": self.name,
                "p": self.params_json,
                "s": self.state,
                "r": self.result_json,
                "e": self.error,
                "c": self.created_at.isoformat(),
                "sa": _instant(self.sent_at),
                "ca": _instant(self.completed_at),
                "x": self.expires_at.isoformat(),
            }
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> Self:
        data = orjson.loads(raw)
        return cls(
            command_id=data["i"],
            device_id=data["d"],
            owner_id=data["o"],
            name=data["n"],
            params_json=data["p"],
            state=data["s"],
            result_json=data["r"],
            error=data["e"],
            created_at=datetime.fromisoformat(data["c"]),
            sent_at=_parse_instant(data["sa"]),
            completed_at=_parse_instant(data["ca"]),
            expires_at=datetime.fromisoformat(data["x"]),
        )
