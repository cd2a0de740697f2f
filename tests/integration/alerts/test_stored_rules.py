"""Rules stored by earlier code, in its document shape, read, changed and evaluated as before."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bson import ObjectId

from ingest.alert_rules import device_rules, fetch_rules
from ingest.thresholds import RAISE, RuleState, silent, step
from models.alerts import AlertRule
from tests.client import Api
from tests.factories import create_device, register
from tests.integration.alerts.test_rules import RULE, UPDATE

ARMED = datetime(2026, 12, 1, tzinfo=UTC)


def stored(owner_id: str, device_id: str, **fields: Any) -> dict[str, Any]:
    """A rule document exactly as services.alert_rules.create_rule wrote it (2026-12)."""
    return {
        "_id": ObjectId(),
        "owner_id": ObjectId(owner_id),
        "device_id": ObjectId(device_id),
        "kind": "THRESHOLD",
        "metric": "temp",
        "min_value": 5.0,
        "max_value": 30.0,
        "hysteresis": 1.0,
        "duration_seconds": 0,
        "no_data_seconds": None,
        "severity": "CRITICAL",
        "enabled": True,
        "created_at": ARMED,
        "updated_at": ARMED,
        "armed_at": ARMED,
        **fields,
    }


async def test_read_update_evaluate_stored_rule_documents(api: Api) -> None:
    user = await register(api)
    device = await create_device(api, user)
    threshold = stored(user.user_id, device.id)
    no_data = stored(
        user.user_id,
        device.id,
        kind="NO_DATA",
        metric=None,
        min_value=None,
        max_value=None,
        hysteresis=0.0,
        no_data_seconds=60,
    )
    # Older still: written before rules had a kind, hysteresis or duration.
    legacy = stored(user.user_id, device.id, min_value=None, max_value=50.0)
    for name in ("kind", "hysteresis", "duration_seconds", "no_data_seconds"):
        del legacy[name]
    await AlertRule.get_pymongo_collection().insert_many([threshold, no_data, legacy])

    # The documents and the API read them.
    document = await AlertRule.get(threshold["_id"])
    assert document is not None
    assert (document.min_value, document.max_value, document.hysteresis) == (5.0, 30.0, 1.0)
    found = await api.execute(RULE, {"id": str(legacy["_id"])}, token=user.access_token)
    rule = found.data["alertRule"]
    assert (rule["kind"], rule["min"], rule["max"], rule["durationSeconds"]) == (
        "THRESHOLD",
        None,
        50.0,
        0,
    )

    # The service changes one of them, keeping the rest.
    updated = await api.execute(
        UPDATE, {"id": str(threshold["_id"]), "input": {"max": 40}}, token=user.access_token
    )
    rule = updated.data["updateAlertRule"]
    assert (rule["min"], rule["max"], rule["hysteresis"]) == (5.0, 40.0, 1.0)
    raw = await AlertRule.get_pymongo_collection().find_one({"_id": threshold["_id"]})
    assert raw is not None and (raw["min_value"], raw["max_value"]) == (5.0, 40.0)

    # The worker evaluates them.
    specs, _ = await fetch_rules({"device_id": ObjectId(device.id)})
    rules = device_rules(specs, set(), {})[device.id]
    assert sorted(spec.rule_id for spec, _ in rules.thresholds["temp"]) == sorted(
        [str(threshold["_id"]), str(legacy["_id"])]
    )
    by_id = {spec.rule_id: spec for spec, _ in rules.thresholds["temp"]}
    assert step(by_id[str(threshold["_id"])], RuleState(), 41.0, 0.0) == RAISE
    assert step(by_id[str(threshold["_id"])], RuleState(), 4.0, 0.0) == RAISE
    assert step(by_id[str(legacy["_id"])], RuleState(), 41.0, 0.0) is None
    assert step(by_id[str(legacy["_id"])], RuleState(), 51.0, 0.0) == RAISE
    [(silence, _)] = rules.no_data
    assert silence.rule_id == str(no_data["_id"])
    assert silent(silence, None, ARMED.timestamp() + 60)
    assert not silent(silence, None, ARMED.timestamp() + 59)
