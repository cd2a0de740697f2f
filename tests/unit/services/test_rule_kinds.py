"""Alert rule kinds (services.rule_kinds): one definition each, read by every layer."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from ingest.alert_rules import device_rules, rule_spec
from models.alerts import RuleKind
from services.errors import BadInput
from services.rule_kinds import RULE_KINDS, RuleFields

VALID = {
    RuleKind.THRESHOLD: RuleFields(kind=RuleKind.THRESHOLD, metric="temp", max_value=30.0),
    RuleKind.NO_DATA: RuleFields(kind=RuleKind.NO_DATA, no_data_seconds=60),
}
# A value for each setting that differs from its default.
SET = {
    "metric": "temp",
    "min_value": 1.0,
    "max_value": 40.0,
    "hysteresis": 1.0,
    "duration_seconds": 5,
    "no_data_seconds": 60,
}


def test_every_rule_kind_defined() -> None:
    assert set(RULE_KINDS) == set(RuleKind) == set(VALID)
    for kind, fields in VALID.items():
        assert fields.checked().kind == kind


@pytest.mark.parametrize("kind", list(RuleKind))
def test_refuse_setting_outside_rule_kind(kind: RuleKind) -> None:
    definition = RULE_KINDS[kind]
    for name, value in SET.items():
        if name in definition.fields:
            continue
        with pytest.raises(BadInput):
            replace(VALID[kind], **{name: value}).checked()


def test_refuse_threshold_by_api_names() -> None:
    with pytest.raises(BadInput) as refused:
        replace(VALID[RuleKind.THRESHOLD], min_value=50.0).checked()
    assert refused.value.field == "min"  # the contract's name, not Python's


def raw(kind: str | None, **fields: Any) -> dict[str, Any]:
    document = {
        "_id": "r-" + str(kind),
        "device_id": "d1",
        "owner_id": "u1",
        "metric": "temp",
        "max_value": 30.0,
        "armed_at": datetime(2026, 1, 1, tzinfo=UTC),
        **fields,
    }
    if kind is not None:
        document["kind"] = kind
    return document


def test_worker_sorts_rules_by_kind_evaluation() -> None:
    specs = [
        rule_spec(raw("THRESHOLD")),
        rule_spec(raw(None)),  # stored before rules had a kind: a threshold
        rule_spec(raw("NO_DATA", metric=None, max_value=None, no_data_seconds=60)),
        rule_spec(raw("LATER_KIND")),  # written by a newer API: not evaluated here
    ]
    rules = device_rules(specs, set(), {})["d1"]
    assert [spec.rule_id for spec, _ in rules.thresholds["temp"]] == ["r-THRESHOLD", "r-None"]
    assert [spec.rule_id for spec, _ in rules.no_data] == ["r-NO_DATA"]
