"""The rules as a worker holds them: loaded from MongoDB, grouped per device and metric."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ingest.thresholds import RuleSpec, RuleState
from models.alerts import Alert, AlertRule, Severity
from services.rule_kinds import DEFAULT_KIND, RULE_KINDS

type Entry = tuple[RuleSpec, RuleState]


@dataclass(slots=True)
class DeviceRules:
    """One device's enabled rules and this worker's state of each."""

    thresholds: dict[str, list[Entry]] = field(default_factory=dict)
    no_data: list[Entry] = field(default_factory=list)
    by_id: dict[str, Entry] = field(default_factory=dict)


def rule_spec(raw: dict[str, Any]) -> RuleSpec:
    """The worker's view of one stored rule."""
    no_data = raw.get("no_data_seconds")
    return RuleSpec(
        rule_id=str(raw["_id"]),
        device_id=str(raw["device_id"]),
        # The rule's organization (live events and alerts name it as the owner).
        owner_id=str(raw.get("organization_id", raw["owner_id"])),
        kind=raw.get("kind", DEFAULT_KIND.value),
        metric=raw.get("metric"),
        min_value=raw.get("min_value"),
        max_value=raw.get("max_value"),
        hysteresis=float(raw.get("hysteresis") or 0.0),
        duration_seconds=float(raw.get("duration_seconds") or 0),
        no_data_seconds=float(no_data) if no_data is not None else None,
        severity=raw.get("severity", Severity.WARNING.value),
        armed_at=raw["armed_at"].timestamp(),
    )


def device_rules(
    specs: Iterable[RuleSpec], open_keys: set[str], previous: dict[str, DeviceRules]
) -> dict[str, DeviceRules]:
    """Per-device rule sets; `open` from MongoDB, duration timers kept from `previous`."""
    devices: dict[str, DeviceRules] = {}
    for spec in specs:
        entry = devices.setdefault(spec.device_id, DeviceRules())
        old = previous.get(spec.device_id)
        kept = old.by_id.get(spec.rule_id) if old is not None else None
        out_since = kept[1].out_since if kept is not None and kept[0] == spec else None
        state = RuleState(out_since=out_since, open=spec.open_key in open_keys)
        pair = (spec, state)
        entry.by_id[spec.rule_id] = pair
        definition = RULE_KINDS.get(spec.kind)
        if definition is None:
            continue  # a kind this worker does not know (a newer API wrote it)
        if definition.evaluation == "silence":
            entry.no_data.append(pair)
        elif spec.metric is not None:
            entry.thresholds.setdefault(spec.metric, []).append(pair)
    return devices


async def fetch_rules(rule_filter: dict[str, Any]) -> tuple[list[RuleSpec], set[str]]:
    """Enabled rules matching the filter, and which of them have an open alert."""
    cursor = AlertRule.get_pymongo_collection().find({**rule_filter, "enabled": True})
    specs = [rule_spec(raw) async for raw in cursor]
    keys = [spec.open_key for spec in specs]
    open_keys: set[str] = set()
    for chunk in itertools.batched(keys, 500, strict=False):
        alerts = Alert.get_pymongo_collection().find(
            {"open_key": {"$in": list(chunk)}}, {"open_key": 1}
        )
        open_keys.update([raw["open_key"] async for raw in alerts])
    return specs, open_keys
