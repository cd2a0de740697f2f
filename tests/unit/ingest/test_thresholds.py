"""The rules' state machine, value by value: thresholds, hysteresis, duration, no data."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ingest.thresholds import CLEAR, RAISE, RuleSpec, RuleState, describe, silent, step

RULE = RuleSpec(
    rule_id="r1",
    device_id="d1",
    owner_id="u1",
    kind="THRESHOLD",
    metric="temp",
    min_value=None,
    max_value=30.0,
    hysteresis=0.0,
    duration_seconds=0.0,
    no_data_seconds=None,
    severity="WARNING",
    armed_at=0.0,
)


def run(rule: RuleSpec, values: Sequence[float], *, step_seconds: float = 1.0) -> list[str | None]:
    state = RuleState()
    return [step(rule, state, value, i * step_seconds) for i, value in enumerate(values)]


def test_raise_once_while_above_max_and_clear_below() -> None:
    assert run(RULE, [20, 31, 35, 40, 29, 31]) == [None, RAISE, None, None, CLEAR, RAISE]


def test_raise_below_min_and_at_either_bound() -> None:
    rule = replace(RULE, min_value=10.0, max_value=30.0)
    # The bounds themselves are inside.
    assert run(rule, [10, 30, 9.9, 9, 10, 30.1]) == [None, None, RAISE, None, CLEAR, RAISE]


def test_keep_alert_open_while_bouncing_within_hysteresis() -> None:
    rule = replace(RULE, hysteresis=2.0)
    bouncing = [31, 29, 31, 29.5, 32, 28.5, 30.5, 28.0]
    assert run(rule, bouncing) == [RAISE] + [None] * 6 + [CLEAR]


def test_clear_with_hysteresis_on_both_bounds() -> None:
    rule = replace(RULE, min_value=10.0, max_value=30.0, hysteresis=1.0)
    assert run(rule, [9, 10.5, 11, 31, 29.5, 29]) == [RAISE, None, CLEAR, RAISE, None, CLEAR]


def test_raise_only_after_duration_out_of_range() -> None:
    rule = replace(RULE, duration_seconds=10.0)
    # One reading per second: out at t=1..; inside at t=5 restarts; out again t=6..16.
    values = [20, 31, 31, 31, 31, 25] + [31] * 11
    actions = run(rule, values)
    assert actions.index(RAISE) == 16  # 10 s after t=6
    assert actions.count(RAISE) == 1
    assert actions.count(CLEAR) == 0


def test_raise_at_once_with_zero_duration_even_if_older_reading() -> None:
    state = RuleState()
    assert step(RULE, state, 31, 100.0) == RAISE
    assert state.open
    assert step(RULE, state, 32, 50.0) is None  # out of order: still one alert


def test_silent_counts_from_last_seen_or_armed() -> None:
    rule = replace(RULE, kind="NO_DATA", metric=None, no_data_seconds=60.0, armed_at=1000.0)
    assert not silent(rule, None, 1059.0)
    assert silent(rule, None, 1060.0)
    assert not silent(rule, 1050.0, 1100.0)
    assert silent(rule, 1050.0, 1110.0)
    assert not silent(rule, 900.0, 1010.0)  # heard before arming: counted from arming


def test_describe_names_metric_value_and_bound() -> None:
    rule = replace(RULE, min_value=10.0)
    assert describe(rule, 31.5) == "temp = 31.5, above max 30"
    assert describe(rule, 2) == "temp = 2, below min 10"
