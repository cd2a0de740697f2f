"""Alert rules through the API: the contract's operations, the extras, validation, tenants."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from beanie import PydanticObjectId
from redis.asyncio import Redis

from core.events import ALERT_RULES_CHANNEL
from models.alerts import Alert, AlertKind, AlertRule, AlertState, Severity, rule_open_key
from services.alerts import NewAlert, open_alert
from tests.client import Api
from tests.contract import op
from tests.factories import Session, admin_and_user, create_device, register

RULE_FIELDS = "id deviceId kind metric min max hysteresis durationSeconds noDataSeconds severity enabled createdAt updatedAt"
UPDATE = f"""mutation Update($id: ID!, $input: UpdateAlertRuleInput!) {{
  updateAlertRule(id: $id, input: $input) {{ {RULE_FIELDS} }} }}"""
NO_DATA = f"""mutation NoData($deviceId: ID!, $seconds: Int!, $severity: Severity) {{
  createNoDataRule(input: {{deviceId: $deviceId, seconds: $seconds, severity: $severity}}) {{ {RULE_FIELDS} }} }}"""
CREATE_FULL = f"""mutation Create($input: CreateAlertRuleInput!) {{
  createAlertRule(input: $input) {{ {RULE_FIELDS} }} }}"""
ENABLE = "mutation Enable($id: ID!) { enableAlertRule(id: $id) { id enabled } }"
DISABLE = "mutation Disable($id: ID!) { disableAlertRule(id: $id) { id enabled } }"
RULE = f"query Rule($id: ID!) {{ alertRule(id: $id) {{ {RULE_FIELDS} }} }}"
MISSING_ID = "0123456789abcdef01234567"


async def create_rule(
    api: Api, session: Session, device_id: str, **variables: Any
) -> dict[str, Any]:
    result = await api.execute(
        op("CreateAlertRule"),
        {"deviceId": device_id, "metric": "temp", **variables},
        token=session.access_token,
    )
    rule: dict[str, Any] = result.data["createAlertRule"]
    return rule


async def test_create_alert_rule_contract_fields(api: Api) -> None:
    user = await register(api)
    device = await create_device(api, user)
    rule = await create_rule(api, user, device.id, min=5.0, max=30.0, severity="CRITICAL")
    assert rule == {
        "id": rule["id"],
        "deviceId": device.id,
        "metric": "temp",
        "min": 5.0,
        "max": 30.0,
        "severity": "CRITICAL",
        "enabled": True,
    }
    stored = await AlertRule.get(PydanticObjectId(rule["id"]))
    assert stored is not None
    assert (str(stored.owner_id), stored.kind.value) == (user.user_id, "THRESHOLD")


async def test_create_alert_rule_defaults_and_extras(api: Api) -> None:
    user = await register(api)
    device = await create_device(api, user)
    result = await api.execute(
        CREATE_FULL,
        {"input": {"deviceId": device.id, "metric": "hum", "max": 80, "hysteresis": 5}},
        token=user.access_token,
    )
    rule = result.data["createAlertRule"]
    assert (rule["severity"], rule["kind"], rule["min"], rule["hysteresis"]) == (
        "WARNING",
        "THRESHOLD",
        None,
        5.0,
    )
    assert (rule["durationSeconds"], rule["noDataSeconds"]) == (0, None)


async def test_create_no_data_rule(api: Api) -> None:
    user = await register(api)
    device = await create_device(api, user)
    result = await api.execute(
        NO_DATA, {"deviceId": device.id, "seconds": 120}, token=user.access_token
    )
    rule = result.data["createNoDataRule"]
    assert (rule["kind"], rule["metric"], rule["noDataSeconds"], rule["min"], rule["max"]) == (
        "NO_DATA",
        None,
        120,
        None,
        None,
    )


async def test_announce_rule_changes_to_workers(api: Api, redis: Redis) -> None:
    user = await register(api)
    device = await create_device(api, user)
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(ALERT_RULES_CHANNEL)
        rule = await create_rule(api, user, device.id, max=30.0)
        await api.execute(DISABLE, {"id": rule["id"]}, token=user.access_token)
        await api.execute(op("DeleteAlertRule"), {"id": rule["id"]}, token=user.access_token)
        notices = []
        async with asyncio.timeout(10):
            async for message in pubsub.listen():
                if message["type"] == "message":
                    notices.append(message["data"].decode())
                if len(notices) == 3:
                    break
    assert notices == [device.id] * 3


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({}, "min"),
        ({"min": 10.0, "max": 5.0}, "min"),
        ({"metric": "  ", "max": 5.0}, "metric"),
        ({"metric": "x" * 101, "max": 5.0}, "metric"),
        ({"metric": "a\u0000b", "max": 5.0}, "metric"),
    ],
)
async def test_refuse_bad_alert_rule(api: Api, variables: dict[str, Any], field: str) -> None:
    user = await register(api)
    device = await create_device(api, user)
    result = await api.execute(
        op("CreateAlertRule"),
        {"deviceId": device.id, "metric": "temp", **variables},
        token=user.access_token,
    )
    assert result.code == "BAD_USER_INPUT"
    assert result.message.startswith(f"{field}:")
    assert await AlertRule.find_all().count() == 0


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"min": 0, "max": 10, "hysteresis": 6}, "hysteresis"),
        ({"max": 10, "hysteresis": -1}, "hysteresis"),
        ({"max": 10, "durationSeconds": -1}, "durationSeconds"),
        ({"max": 10, "durationSeconds": 8 * 24 * 3600}, "durationSeconds"),
    ],
)
async def test_refuse_bad_hysteresis_or_duration(
    api: Api, extra: dict[str, Any], field: str
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    result = await api.execute(
        CREATE_FULL,
        {"input": {"deviceId": device.id, "metric": "t", **extra}},
        token=user.access_token,
    )
    assert result.code == "BAD_USER_INPUT"
    assert result.message.startswith(f"{field}:")


@pytest.mark.parametrize("seconds", [0, -5, 8 * 24 * 3600])
async def test_refuse_bad_no_data_seconds(api: Api, seconds: int) -> None:
    user = await register(api)
    device = await create_device(api, user)
    result = await api.execute(
        NO_DATA, {"deviceId": device.id, "seconds": seconds}, token=user.access_token
    )
    assert result.code == "BAD_USER_INPUT"
    assert result.message.startswith("noDataSeconds:")


async def test_refuse_rules_beyond_per_device_limit(api: Api) -> None:
    user = await register(api)
    device = await create_device(api, user)
    other = await create_device(api, user)
    for _ in range(50):  # alert_rules_per_device_max
        await create_rule(api, user, device.id, max=1.0)
    result = await api.execute(
        op("CreateAlertRule"),
        {"deviceId": device.id, "metric": "temp", "max": 1.0},
        token=user.access_token,
    )
    assert result.code == "CONFLICT"
    assert await AlertRule.find(AlertRule.device_id == PydanticObjectId(device.id)).count() == 50
    await create_rule(api, user, other.id, max=1.0)  # per device, not per user


async def test_list_alert_rules_own_and_per_device(api: Api) -> None:
    user = await register(api)
    first = await create_device(api, user)
    second = await create_device(api, user)
    a = await create_rule(api, user, first.id, max=1.0)
    b = await create_rule(api, user, second.id, min=0.0)
    everything = await api.execute(op("AlertRules"), {}, token=user.access_token)
    assert [r["id"] for r in everything.data["alertRules"]] == [b["id"], a["id"]]
    one = await api.execute(op("AlertRules"), {"deviceId": first.id}, token=user.access_token)
    assert one.data["alertRules"] == [a]


async def test_update_alert_rule_given_fields_only(api: Api) -> None:
    user = await register(api)
    device = await create_device(api, user)
    rule = await create_rule(api, user, device.id, min=0.0, max=30.0)
    result = await api.execute(
        UPDATE,
        {"id": rule["id"], "input": {"max": 40, "min": None, "durationSeconds": 60}},
        token=user.access_token,
    )
    updated = result.data["updateAlertRule"]
    assert (updated["min"], updated["max"], updated["durationSeconds"], updated["metric"]) == (
        None,
        40.0,
        60,
        "temp",
    )
    assert updated["updatedAt"] > rule_created_at(await api_rule(api, user, rule["id"]))


async def api_rule(api: Api, session: Session, rule_id: str) -> dict[str, Any]:
    result = await api.execute(RULE, {"id": rule_id}, token=session.access_token)
    found: dict[str, Any] = result.data["alertRule"]
    return found


def rule_created_at(rule: dict[str, Any]) -> str:
    return str(rule["createdAt"])


async def test_refuse_update_that_breaks_rule(api: Api) -> None:
    user = await register(api)
    device = await create_device(api, user)
    rule = await create_rule(api, user, device.id, min=0.0, max=30.0)
    for change, field in [
        ({"min": None, "max": None}, "min"),
        ({"min": 50}, "min"),
        ({"severity": None}, "severity"),
        ({"noDataSeconds": 10}, "noDataSeconds"),
    ]:
        result = await api.execute(
            UPDATE, {"id": rule["id"], "input": change}, token=user.access_token
        )
        assert result.code == "BAD_USER_INPUT", change
        assert result.message.startswith(f"{field}:"), result.message
    assert (await api_rule(api, user, rule["id"]))["max"] == 30.0


async def test_disable_alert_rule_clears_open_alert(api: Api) -> None:
    user = await register(api)
    device = await create_device(api, user)
    rule = await create_rule(api, user, device.id, max=30.0)
    alert = await open_alert(
        NewAlert(
            owner_id=user.user_id,
            device_id=device.id,
            rule_id=rule["id"],
            kind=AlertKind.THRESHOLD,
            metric="temp",
            value=31.0,
            message="temp = 31, above max 30",
            severity=Severity.WARNING,
            open_key=rule_open_key(rule["id"]),
        )
    )
    assert alert is not None
    disabled = await api.execute(DISABLE, {"id": rule["id"]}, token=user.access_token)
    assert disabled.data["disableAlertRule"] == {"id": rule["id"], "enabled": False}
    cleared = await Alert.get(alert.id)
    assert cleared is not None
    assert (cleared.state, cleared.cleared_by, cleared.open_key) == (
        AlertState.CLEARED,
        "rule_disabled",
        None,
    )
    enabled = await api.execute(ENABLE, {"id": rule["id"]}, token=user.access_token)
    assert enabled.data["enableAlertRule"]["enabled"] is True


async def test_delete_alert_rule_keeps_its_alert_cleared(api: Api) -> None:
    user = await register(api)
    device = await create_device(api, user)
    rule = await create_rule(api, user, device.id, max=30.0)
    alert = await open_alert(
        NewAlert(
            owner_id=user.user_id,
            device_id=device.id,
            rule_id=rule["id"],
            kind=AlertKind.THRESHOLD,
            metric="temp",
            value=31.0,
            message="m",
            severity=Severity.WARNING,
            open_key=rule_open_key(rule["id"]),
        )
    )
    assert alert is not None
    result = await api.execute(op("DeleteAlertRule"), {"id": rule["id"]}, token=user.access_token)
    assert result.data == {"deleteAlertRule": True}
    assert await AlertRule.get(PydanticObjectId(rule["id"])) is None
    kept = await Alert.get(alert.id)
    assert kept is not None
    assert (kept.state, kept.cleared_by) == (AlertState.CLEARED, "rule_deleted")
    again = await api.execute(op("DeleteAlertRule"), {"id": rule["id"]}, token=user.access_token)
    assert (again.code, again.message) == ("NOT_FOUND", "Alert rule not found.")


async def test_delete_device_removes_its_rules_and_alerts(api: Api) -> None:
    user = await register(api)
    device = await create_device(api, user)
    kept_device = await create_device(api, user)
    rule = await create_rule(api, user, device.id, max=30.0)
    kept_rule = await create_rule(api, user, kept_device.id, max=30.0)
    for device_id, rule_id in ((device.id, rule["id"]), (kept_device.id, kept_rule["id"])):
        await open_alert(
            NewAlert(
                owner_id=user.user_id,
                device_id=device_id,
                rule_id=rule_id,
                kind=AlertKind.THRESHOLD,
                metric="temp",
                value=31.0,
                message="m",
                severity=Severity.WARNING,
                open_key=rule_open_key(rule_id),
            )
        )
    deleted = await api.execute(op("DeleteDevice"), {"id": device.id}, token=user.access_token)
    assert deleted.data == {"deleteDevice": True}
    assert await AlertRule.find(AlertRule.device_id == PydanticObjectId(device.id)).count() == 0
    assert await Alert.find(Alert.device_id == PydanticObjectId(device.id)).count() == 0
    assert await AlertRule.find_all().count() == 1
    assert await Alert.find_all().count() == 1


# ---------------------------------------------------------------- tenants


async def test_hide_rules_of_other_tenant_as_missing(api: Api) -> None:
    _, a = await admin_and_user(api)
    b = await register(api)
    device = await create_device(api, a)
    rule = await create_rule(api, a, device.id, max=30.0)
    token = b.access_token
    listed = await api.execute(op("AlertRules"), {}, token=token)
    assert listed.data == {"alertRules": []}
    attempts: list[tuple[str, dict[str, Any], str | None]] = [
        (op("AlertRules"), {"deviceId": device.id}, "Device not found."),
        (op("CreateAlertRule"), {"deviceId": device.id, "metric": "t", "max": 1.0}, None),
        (op("DeleteAlertRule"), {"id": rule["id"]}, "Alert rule not found."),
        (UPDATE, {"id": rule["id"], "input": {"max": 99}}, "Alert rule not found."),
        (DISABLE, {"id": rule["id"]}, "Alert rule not found."),
        (RULE, {"id": rule["id"]}, "Alert rule not found."),
    ]
    for query, variables, message in attempts:
        foreign = await api.execute(query, variables, token=token)
        assert foreign.code == "NOT_FOUND", query
        missing_variables = {
            k: (MISSING_ID if k in {"id", "deviceId"} else v) for k, v in variables.items()
        }
        missing = await api.execute(query, missing_variables, token=token)
        # Identical answers: somebody else's rule or device is indistinguishable from none.
        assert (foreign.code, foreign.message) == (missing.code, missing.message)
        if message:
            assert foreign.message == message
    untouched = await api_rule(api, a, rule["id"])
    assert (untouched["max"], untouched["enabled"]) == (30.0, True)
    assert await AlertRule.find_all().count() == 1


async def test_admin_sees_and_manages_every_rule(api: Api) -> None:
    admin, user = await admin_and_user(api)
    device = await create_device(api, user)
    rule = await create_rule(api, user, device.id, max=30.0)
    listed = await api.execute(op("AlertRules"), {}, token=admin.access_token)
    assert [r["id"] for r in listed.data["alertRules"]] == [rule["id"]]
    # An admin's rule on a user's device belongs to the device's owner.
    made = await create_rule(api, admin, device.id, min=1.0)
    stored = await AlertRule.get(PydanticObjectId(made["id"]))
    assert stored is not None and str(stored.owner_id) == user.user_id


async def test_refuse_rules_without_token(api: Api) -> None:
    result = await api.execute(op("AlertRules"), {})
    assert result.code == "UNAUTHENTICATED"
    bad_id = await api.execute(op("DeleteAlertRule"), {"id": "nope"})
    assert bad_id.code == "UNAUTHENTICATED"


async def test_refuse_malformed_rule_id(api: Api) -> None:
    user = await register(api)
    result = await api.execute(op("DeleteAlertRule"), {"id": "nope"}, token=user.access_token)
    assert result.code == "BAD_USER_INPUT"
