"""The MQTT topic kinds of contract/devices.md, each defined once.

Every layer iterates over TOPIC_KINDS: the broker's ACLs (services.broker_identities),
the ingest worker's subscriptions, its topic parser, its stats labels and its handler
table (ingest/worker.py, ingest/payloads.py, ingest/stats.py). Adding a kind is one
entry here and, when the worker consumes it, its handler. Plain data: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

type Direction = Literal["uplink", "downlink"]
# Who speaks on a topic: a device, the ingest worker, the API's dynsec connection
# ("api") or its OTA connection ("api_ota") (services.broker_identities).
type Party = Literal["device", "ingest", "api", "api_ota"]

_PLACEHOLDER: Final = re.compile(r"\{[^}/]+\}")


@dataclass(frozen=True, slots=True)
class TopicKind:
    """One topic of contract/devices.md, `devices/{id}/<suffix>`."""

    # The worker's stats label and handler key.
    name: str
    # As the contract writes it: placeholders in braces (`commands/{commandId}`).
    suffix: str
    direction: Direction
    # Who may publish it; the other side (the ingest worker for an uplink, the device
    # for a downlink) may subscribe to it and receive it.
    publisher: Party
    qos: tuple[int, ...]
    retained: bool = False
    # The ingest worker subscribes to it and has a handler for it.
    consumed: bool = False
    # The broker's ACLs allow it. False: in the contract, awaiting the issue that serves it.
    granted: bool = True
    # The ACL filter's suffix when it is wider than the topic (default: placeholders -> +).
    acl_suffix: str | None = None
    # A second party that may publish it too (the ingest worker answers twin/get).
    republisher: Party | None = None

    @property
    def receiver(self) -> Party:
        return "ingest" if self.direction == "uplink" else "device"

    @property
    def filter_suffix(self) -> str:
        return self.acl_suffix or _PLACEHOLDER.sub("+", self.suffix)

    def topic(self, device_id: str) -> str:
        """The device's own filter for this kind (its ACLs)."""
        return f"devices/{device_id}/{self.filter_suffix}"

    @property
    def pattern(self) -> str:
        """Every device's topics of this kind (the worker's and the API's ACLs)."""
        return f"devices/+/{self.filter_suffix}"


TOPIC_KINDS: Final[tuple[TopicKind, ...]] = (
    # Device to platform.
    TopicKind("telemetry", "telemetry", "uplink", "device", (0, 1), consumed=True),
    TopicKind("status", "status", "uplink", "device", (1,), retained=True, consumed=True),
    TopicKind("logs", "logs", "uplink", "device", (0, 1), consumed=True),
    TopicKind("ota_progress", "ota/progress", "uplink", "device", (1,), consumed=True),
    TopicKind(
        "command_result", "commands/{commandId}/result", "uplink", "device", (1,), consumed=True
    ),
    TopicKind("twin_reported", "twin/reported", "uplink", "device", (1,), consumed=True),
    TopicKind("twin_get", "twin/get", "uplink", "device", (1,), consumed=True),
    # Platform to device.
    TopicKind("ota", "ota", "downlink", "api_ota", (1,), retained=True),
    TopicKind("command", "commands/{commandId}", "downlink", "api", (1,), acl_suffix="commands/#"),
    TopicKind(
        "twin_desired", "twin/desired", "downlink", "api", (1,), retained=True, republisher="ingest"
    ),
)

# What the ingest worker subscribes to and handles, in subscription order.
CONSUMED: Final = tuple(kind for kind in TOPIC_KINDS if kind.consumed)


def granted(*, publisher: Party | None = None, receiver: Party | None = None) -> list[TopicKind]:
    """The kinds the broker allows, published or received by the given party."""
    return [
        kind
        for kind in TOPIC_KINDS
        if kind.granted
        and (publisher is None or publisher in (kind.publisher, kind.republisher))
        and (receiver is None or kind.receiver == receiver)
    ]


def check_handlers(names: Iterable[str]) -> None:
    """Raise unless `names` are exactly the consumed kinds (a worker's handler table)."""
    given = set(names)
    wanted = {kind.name for kind in CONSUMED}
    if given != wanted:
        raise RuntimeError(
            f"ingest handlers do not match the consumed topic kinds: "
            f"missing {sorted(wanted - given)}, unknown {sorted(given - wanted)}"
        )


def _check(kinds: tuple[TopicKind, ...]) -> None:
    for attribute in ("name", "suffix"):
        values = [getattr(kind, attribute) for kind in kinds]
        if len(values) != len(set(values)):
            raise RuntimeError(f"topic kinds: duplicate {attribute}")
    for kind in kinds:
        if kind.consumed and not (kind.granted and kind.direction == "uplink"):
            raise RuntimeError(f"topic kind {kind.name}: consumed, not a granted uplink")
        if (kind.direction == "uplink") != (kind.publisher == "device"):
            raise RuntimeError(f"topic kind {kind.name}: devices publish exactly the uplinks")
        if kind.republisher == "device" or kind.republisher == kind.publisher:
            raise RuntimeError(f"topic kind {kind.name}: republished by a device or by itself")
        if not kind.name.isidentifier():
            raise RuntimeError(f"topic kind {kind.name}: not an identifier (a regex group)")


_check(TOPIC_KINDS)
