"""The alert lifecycle through the API: list, acknowledge, clear, subscriptions, tenants.

Alerts are opened here with the service the worker uses (services.alerts.open_alert);
the worker's own raising over MQTT is tested in test_evaluation.py.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from beanie import PydanticObjectId
from redis.asyncio import Redis

from core.events import AlertChange, AlertEvent, alert_device_channel, alert_owner_channel
from models.alerts import Alert, AlertKind, AlertState, Severity, rule_open_key
from services.alerts import NewAlert, alert_event, open_alert, publish_alert_event
from tests.client import Api
from tests.contract import op
from tests.factories import Session, admin_and_user, create_device, register
from tests.integration.graph.test_subscriptions import client
from tests.integration.live import wait_numsub

CLEAR = """mutation Clear($id: ID!) { clearAlert(id: $id) { id state clearedAt acknowledgedAt } }"""
ALERT = """query One($id: ID!) { alert(id: $id) { id state kind ruleId } }"""
UPDATED = """subscription Updated($deviceId: ID) { alertUpdated(deviceId: $deviceId) {
  id state acknowledgedAt clearedAt } }"""
BY_DEVICE = (
    """query ByDevice($deviceId: ID) { alerts(deviceId: $deviceId) { edges { node { id } } } }"""
)
MISSING_ID = "0123456789abcdef01234567"


async def raise_alert(
    session: Session, device_id: str, *, rule_id: str | None = None, value: float = 31.0
) -> Alert:
    alert = await open_alert(
        NewAlert(
            owner_id=session.user_id,
            device_id=device_id,
            rule_id=rule_id,
            kind=AlertKind.THRESHOLD if rule_id else AlertKind.ANOMALY,
            metric="temp",
            value=value,
            message=f"temp = {value:g}",
            severity=Severity.CRITICAL,
            open_key=rule_open_key(rule_id) if rule_id else None,
        )
    )
    assert alert is not None
    return alert


async def alert_ids(api: Api, session: Session, **variables: Any) -> list[str]:
    result = await api.execute(op("Alerts"), variables, token=session.access_token)
    return [edge["node"]["id"] for edge in result.data["alerts"]["edges"]]


async def test_list_alerts_contract_fields_newest_first(api: Api) -> None:
    user = await register(api)
    device = await create_device(api, user)
    older = await raise_alert(user, device.id, value=31.0)
    newer = await raise_alert(user, device.id, value=35.5)
    result = await api.execute(op("Alerts"), {}, token=user.access_token)
    connection = result.data["alerts"]
    assert [edge["node"]["id"] for edge in connection["edges"]] == [str(newer.id), str(older.id)]
    node = connection["edges"][0]["node"]
    assert node == {
        "id": str(newer.id),
        "deviceId": device.id,
        "metric": "temp",
        "value": 35.5,
        "message": "temp = 35.5",
        "severity": "CRITICAL",
        "state": "ACTIVE",
        "raisedAt": node["raisedAt"],
        "acknowledgedAt": None,
        "clearedAt": None,
    }
    assert datetime.fromisoformat(node["raisedAt"]) <= datetime.now(UTC)
    assert connection["pageInfo"]["hasNextPage"] is False


async def test_page_through_alerts_by_state(api: Api) -> None:
    user = await register(api)
    device = await create_device(api, user)
    alerts = [await raise_alert(user, device.id, value=float(i)) for i in range(5)]
    await api.execute(op("AcknowledgeAlert"), {"id": str(alerts[1].id)}, token=user.access_token)
    newest_first = [str(a.id) for a in reversed(alerts)]
    first = await api.execute(op("Alerts"), {"first": 2}, token=user.access_token)
    page = first.data["alerts"]
    assert [e["node"]["id"] for e in page["edges"]] == newest_first[:2]
    assert page["pageInfo"]["hasNextPage"] is True
    rest = await alert_ids(api, user, first=10, after=page["pageInfo"]["endCursor"])
    assert rest == newest_first[2:]
    active = await alert_ids(api, user, state="ACTIVE")
    assert active == [i for i in newest_first if i != str(alerts[1].id)]
    assert await alert_ids(api, user, state="ACKNOWLEDGED") == [str(alerts[1].id)]
    assert await alert_ids(api, user, state="CLEARED") == []
    bad_cursor = await api.execute(op("Alerts"), {"after": "zz"}, token=user.access_token)
    assert bad_cursor.code == "BAD_USER_INPUT"


async def test_acknowledge_then_clear_alert(api: Api) -> None:
    user = await register(api)
    device = await create_device(api, user)
    alert = await raise_alert(user, device.id, rule_id=str(PydanticObjectId()))
    acked = await api.execute(
        op("AcknowledgeAlert"), {"id": str(alert.id)}, token=user.access_token
    )
    first = acked.data["acknowledgeAlert"]
    assert (first["id"], first["state"]) == (str(alert.id), "ACKNOWLEDGED")
    assert first["acknowledgedAt"] is not None
    again = await api.execute(
        op("AcknowledgeAlert"), {"id": str(alert.id)}, token=user.access_token
    )
    assert again.data["acknowledgeAlert"] == first  # idempotent, same instant
    cleared = await api.execute(CLEAR, {"id": str(alert.id)}, token=user.access_token)
    node = cleared.data["clearAlert"]
    assert (node["state"], node["acknowledgedAt"]) == ("CLEARED", first["acknowledgedAt"])
    stored = await Alert.get(alert.id)
    assert stored is not None
    assert (stored.state, stored.cleared_by, stored.open_key) == (
        AlertState.CLEARED,
        "user",
        None,
    )
    # Once cleared, the rule may open a new alert.
    assert stored.rule_id is not None
    await raise_alert(user, device.id, rule_id=str(stored.rule_id))


async def test_acknowledge_cleared_alert_keeps_it_cleared(api: Api) -> None:
    user = await register(api)
    device = await create_device(api, user)
    alert = await raise_alert(user, device.id)
    await api.execute(CLEAR, {"id": str(alert.id)}, token=user.access_token)
    acked = await api.execute(
        op("AcknowledgeAlert"), {"id": str(alert.id)}, token=user.access_token
    )
    node = acked.data["acknowledgeAlert"]
    assert node["state"] == "CLEARED"
    assert node["acknowledgedAt"] is not None


async def test_keep_one_open_alert_per_rule_under_concurrency() -> None:
    rule_id = str(PydanticObjectId())
    device_id, owner_id = str(PydanticObjectId()), str(PydanticObjectId())
    new = NewAlert(
        owner_id=owner_id,
        device_id=device_id,
        rule_id=rule_id,
        kind=AlertKind.THRESHOLD,
        metric="temp",
        value=31.0,
        message="m",
        severity=Severity.WARNING,
        open_key=rule_open_key(rule_id),
    )
    results = await asyncio.gather(*(open_alert(new) for _ in range(20)))
    assert sum(result is not None for result in results) == 1
    assert await Alert.find(Alert.rule_id == PydanticObjectId(rule_id)).count() == 1


# ---------------------------------------------------------------- tenants


async def test_hide_alerts_of_other_tenant_as_missing(api: Api) -> None:
    _, a = await admin_and_user(api)
    b = await register(api)
    device = await create_device(api, a)
    alert = await raise_alert(a, device.id)
    assert await alert_ids(api, b) == []
    for query in (op("AcknowledgeAlert"), CLEAR, ALERT):
        foreign = await api.execute(query, {"id": str(alert.id)}, token=b.access_token)
        missing = await api.execute(query, {"id": MISSING_ID}, token=b.access_token)
        assert (foreign.code, foreign.message) == ("NOT_FOUND", "Alert not found.")
        assert (missing.code, missing.message) == (foreign.code, foreign.message)
    foreign_device = await api.execute(BY_DEVICE, {"deviceId": device.id}, token=b.access_token)
    missing_device = await api.execute(BY_DEVICE, {"deviceId": MISSING_ID}, token=b.access_token)
    assert foreign_device.code == "NOT_FOUND"
    assert foreign_device.message == missing_device.message
    untouched = await Alert.get(alert.id)
    assert untouched is not None
    assert (untouched.state, untouched.acknowledged_at) == (AlertState.ACTIVE, None)


async def test_admin_sees_and_acknowledges_every_alert(api: Api) -> None:
    admin, user = await admin_and_user(api)
    device = await create_device(api, user)
    alert = await raise_alert(user, device.id)
    assert await alert_ids(api, admin) == [str(alert.id)]
    own = await api.execute(BY_DEVICE, {"deviceId": device.id}, token=user.access_token)
    assert own.data["alerts"]["edges"] == [{"node": {"id": str(alert.id)}}]
    acked = await api.execute(
        op("AcknowledgeAlert"), {"id": str(alert.id)}, token=admin.access_token
    )
    assert acked.data["acknowledgeAlert"]["state"] == "ACKNOWLEDGED"


async def test_refuse_alerts_without_token(api: Api) -> None:
    assert (await api.execute(op("Alerts"), {})).code == "UNAUTHENTICATED"
    assert (await api.execute(op("AcknowledgeAlert"), {"id": MISSING_ID})).code == (
        "UNAUTHENTICATED"
    )


# ---------------------------------------------------------------- subscriptions


def event_of(alert: Alert, change: AlertChange = "raised") -> AlertEvent:
    return alert_event(alert, change, origin="test")


async def test_receive_alert_raised_contract_fields(
    api: Api, api_server: str, redis: Redis
) -> None:
    _, user = await admin_and_user(api)  # an ADMIN would listen on alerts:all
    device = await create_device(api, user)
    alert = await raise_alert(user, device.id, value=42.0)
    async with client(api_server, user) as ws:
        await ws.subscribe("1", op("AlertRaised"))
        await wait_numsub(redis, alert_owner_channel(user.user_id), 1)
        await publish_alert_event(redis, event_of(alert, "acknowledged"))  # not "raised"
        await publish_alert_event(redis, event_of(alert))
        data = await ws.next_data()
    assert data == {
        "alertRaised": {
            "id": str(alert.id),
            "deviceId": device.id,
            "metric": "temp",
            "value": 42.0,
            "message": "temp = 42",
            "severity": "CRITICAL",
            "state": "ACTIVE",
            "raisedAt": alert.raised_at.isoformat(),
        }
    }


async def test_receive_alert_updated_on_acknowledge_and_clear(
    api: Api, api_server: str, redis: Redis
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    alert = await raise_alert(user, device.id)
    async with client(api_server, user) as ws:
        await ws.subscribe("1", UPDATED, {"deviceId": device.id})
        await wait_numsub(redis, alert_device_channel(device.id), 1)
        await api.execute(op("AcknowledgeAlert"), {"id": str(alert.id)}, token=user.access_token)
        await api.execute(CLEAR, {"id": str(alert.id)}, token=user.access_token)
        acked = (await ws.next_data())["alertUpdated"]
        cleared = (await ws.next_data())["alertUpdated"]
    assert (acked["id"], acked["state"], acked["clearedAt"]) == (
        str(alert.id),
        "ACKNOWLEDGED",
        None,
    )
    assert (cleared["state"], cleared["acknowledgedAt"]) == ("CLEARED", acked["acknowledgedAt"])
    assert cleared["clearedAt"] is not None


async def test_isolate_alert_raised_cross_tenant(api: Api, api_server: str, redis: Redis) -> None:
    _, a = await admin_and_user(api)
    b = await register(api)
    device_a, device_b = await create_device(api, a), await create_device(api, b)
    alert_a = await raise_alert(a, device_a.id, value=1.0)
    alert_b = await raise_alert(b, device_b.id, value=2.0)
    async with client(api_server, b) as ws:
        await ws.subscribe("1", op("AlertRaised"))
        channel = alert_owner_channel(b.user_id)
        await wait_numsub(redis, channel, 1)
        await publish_alert_event(redis, event_of(alert_a))
        # On B's own channel, but naming A: a misrouted event must be withheld too.
        await redis.publish(channel, event_of(alert_a).encode())
        await publish_alert_event(redis, event_of(alert_b))
        data = await ws.next_data()
    # Published last: had anything of A's been delivered, it would have come first.
    assert data["alertRaised"]["id"] == str(alert_b.id)


async def test_refuse_alert_subscription_foreign_device_not_found(
    api: Api, api_server: str
) -> None:
    _, a = await admin_and_user(api)
    b = await register(api)
    device_a = await create_device(api, a)
    async with client(api_server, b) as ws:
        await ws.subscribe("1", UPDATED, {"deviceId": device_a.id})
        kind, op_id, payload = await ws.receive()
    assert (kind, op_id) == ("error", "1")
    errors = payload if isinstance(payload, list) else [payload]
    assert [error["extensions"]["code"] for error in errors] == ["NOT_FOUND"]


@pytest.mark.parametrize("raw", [b"not json", b'{"c": "exploded"}'])
def test_refuse_undecodable_alert_event(raw: bytes) -> None:
    with pytest.raises((ValueError, KeyError)):
        AlertEvent.decode(raw)
