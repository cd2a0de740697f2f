"""Rule evaluation as a pure state machine: one rule, its state, one value -> raise/clear.

Kept apart from the engine (ingest/alerts.py) so the rules' semantics can be tested
value by value, without a broker or a database:

Each kind is defined in services.rule_kinds; its settings keep their stored names.

- **Threshold**: a value below `min_value` or above `max_value` is out of range.
- **Duration**: out of range must last `duration_seconds` of *reading time* (from the
  first out-of-range reading to the current one) before the alert is raised; any
  reading back inside [min_value, max_value] restarts the wait. Without readings nothing is
  raised: silence is the no-data rule's business.
- **Hysteresis**: an open alert clears only once a value is back inside by the margin,
  i.e. within [min_value + hysteresis, max_value - hysteresis]; a value bouncing around the
  threshold keeps the one open alert open instead of clearing and raising again.
- **No data**: silent for `no_data_seconds` (wall clock) raises; any message clears.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

type Action = Literal["raise", "clear"]

RAISE: Final = "raise"
CLEAR: Final = "clear"


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """What a worker needs of one enabled rule (ids as strings, times as epoch seconds)."""

    rule_id: str
    device_id: str
    owner_id: str
    kind: str  # RuleKind value
    metric: str | None
    min_value: float | None
    max_value: float | None
    hysteresis: float
    duration_seconds: float
    no_data_seconds: float | None
    severity: str  # Severity value
    armed_at: float

    @property
    def open_key(self) -> str:
        return f"rule:{self.rule_id}"


@dataclass(slots=True)
class RuleState:
    """One worker's view of a rule: since when out of range, and whether an alert is open."""

    out_since: float | None = None
    open: bool = False


def step(rule: RuleSpec, state: RuleState, value: float, at: float) -> Action | None:
    """Feed one value read at `at` to a threshold rule; the transition it causes, if any."""
    low = rule.min_value
    high = rule.max_value
    if (low is not None and value < low) or (high is not None and value > high):
        if state.out_since is None:
            state.out_since = at
        if not state.open and at - state.out_since >= rule.duration_seconds:
            state.open = True
            return RAISE
        return None
    state.out_since = None
    if state.open:
        margin = rule.hysteresis
        if (low is None or value >= low + margin) and (high is None or value <= high - margin):
            state.open = False
            return CLEAR
    return None


def silent(rule: RuleSpec, last_seen: float | None, now: float) -> bool:
    """Whether a no-data rule's device has been silent too long (counted from when the
    rule was armed, for a device not heard from since)."""
    if rule.no_data_seconds is None:
        return False
    since = rule.armed_at if last_seen is None else max(last_seen, rule.armed_at)
    return now - since >= rule.no_data_seconds


def describe(rule: RuleSpec, value: float) -> str:
    """The alert message for a threshold rule's out-of-range value."""
    if rule.min_value is not None and value < rule.min_value:
        return f"{rule.metric} = {value:g}, below min {rule.min_value:g}"
    return f"{rule.metric} = {value:g}, above max {rule.max_value:g}"
