"""The permission matrix of docs/access.md, cell by cell, with real requests: each role
(OWNER, OPERATOR, VIEWER of the organization; an outsider USER; a platform ADMIN that
is no member) x each operation on the organization's resources."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

import pytest
from redis.asyncio import Redis

from core.events import device_channel
from tests.client import Api, Result
from tests.contract import op
from tests.factories import Session, register
from tests.integration.api.test_websocket import LEGACY_WS, TRANSPORT_WS
from tests.integration.graph.test_subscriptions import (
    client,
    expected_reading,
    publish,
    reading_event,
)
from tests.integration.live import wait_numsub
from tests.integration.organizations import (
    CREATE_ORG_DASHBOARD,
    DASHBOARD_CONFIG,
    Team,
    add_member,
    make_team,
)

ROLES: Final = ("owner", "operator", "viewer", "outsider", "admin")
OK: Final = "ok"
# What each role gets, by the kind of operation (docs/access.md, "The matrix").
READ: Final = {"owner": OK, "operator": OK, "viewer": OK, "outsider": "NOT_FOUND", "admin": OK}
WRITE: Final = {**READ, "viewer": "FORBIDDEN"}
MEMBERS: Final = {**WRITE, "operator": "FORBIDDEN"}
# Dashboards: their organization's members only, an ADMIN included.
DASHBOARD_READ: Final = {**READ, "admin": "NOT_FOUND"}
DASHBOARD_WRITE: Final = {**WRITE, "admin": "NOT_FOUND"}
# An ADMIN sees the organization (not its dashboards): creating one there is FORBIDDEN.
DASHBOARD_CREATE: Final = {**WRITE, "admin": "FORBIDDEN"}

DASHBOARD = "query ($id: ID!) { dashboard(id: $id) { id name } }"

type Operation = Callable[[Api, Team, Session], Awaitable[Result]]


async def _run(api: Api, session: Session, name: str, variables: dict[str, Any]) -> Result:
    return await api.execute(op(name), variables, token=session.access_token)


async def read_device(api: Api, team: Team, who: Session) -> Result:
    return await _run(api, who, "Device", {"id": team.device.id})


async def update_device(api: Api, team: Team, who: Session) -> Result:
    return await _run(api, who, "UpdateDevice", {"id": team.device.id, "name": "renamed"})


async def delete_device(api: Api, team: Team, who: Session) -> Result:
    return await _run(api, who, "DeleteDevice", {"id": team.device.id})


async def rotate_credentials(api: Api, team: Team, who: Session) -> Result:
    return await _run(api, who, "RotateDeviceCredentials", {"id": team.device.id})


async def read_twin(api: Api, team: Team, who: Session) -> Result:
    return await _run(api, who, "DeviceTwin", {"id": team.device.id})


async def update_desired_state(api: Api, team: Team, who: Session) -> Result:
    variables = {"deviceId": team.device.id, "patch": {"interval": 30}}
    return await _run(api, who, "UpdateDesiredState", variables)


async def create_device_in_organization(api: Api, team: Team, who: Session) -> Result:
    variables = {"name": "new", "type": "esp32", "organizationId": team.organization_id}
    return await _run(api, who, "CreateOrgDevice", variables)


async def create_alert_rule(api: Api, team: Team, who: Session) -> Result:
    variables = {"deviceId": team.device.id, "metric": "temp", "max": 30.0}
    return await _run(api, who, "CreateAlertRule", variables)


async def _owner_rule(api: Api, team: Team) -> str:
    created = await create_alert_rule(api, team, team.owner)
    return str(created.data["createAlertRule"]["id"])


async def list_alert_rules(api: Api, team: Team, who: Session) -> Result:
    rule_id = await _owner_rule(api, team)
    result = await _run(api, who, "AlertRules", {"deviceId": team.device.id})
    if not result.errors:
        assert [rule["id"] for rule in result.data["alertRules"]] == [rule_id]
    return result


async def delete_alert_rule(api: Api, team: Team, who: Session) -> Result:
    return await _run(api, who, "DeleteAlertRule", {"id": await _owner_rule(api, team)})


async def _owner_dashboard(api: Api, team: Team) -> str:
    created = await api.execute(
        CREATE_ORG_DASHBOARD,
        {"name": "Lab", "config": DASHBOARD_CONFIG, "organizationId": team.organization_id},
        token=team.owner.access_token,
    )
    return str(created.data["createDashboard"]["id"])


async def read_dashboard(api: Api, team: Team, who: Session) -> Result:
    dashboard_id = await _owner_dashboard(api, team)
    return await api.execute(DASHBOARD, {"id": dashboard_id}, token=who.access_token)


async def update_dashboard(api: Api, team: Team, who: Session) -> Result:
    variables = {"id": await _owner_dashboard(api, team), "name": "Renamed"}
    return await _run(api, who, "UpdateDashboard", variables)


async def delete_dashboard(api: Api, team: Team, who: Session) -> Result:
    return await _run(api, who, "DeleteDashboard", {"id": await _owner_dashboard(api, team)})


async def create_dashboard_in_organization(api: Api, team: Team, who: Session) -> Result:
    variables = {"name": "Mine", "config": DASHBOARD_CONFIG, "organizationId": team.organization_id}
    return await api.execute(CREATE_ORG_DASHBOARD, variables, token=who.access_token)


async def add_member_op(api: Api, team: Team, who: Session) -> Result:
    newcomer = await register(api)
    variables = {"organizationId": team.organization_id, "email": newcomer.email, "role": "VIEWER"}
    return await _run(api, who, "AddMember", variables)


async def remove_member_op(api: Api, team: Team, who: Session) -> Result:
    leaving = await register(api)
    await add_member(api, team.owner, team.organization_id, leaving, "VIEWER")
    variables = {"organizationId": team.organization_id, "userId": leaving.user_id}
    return await _run(api, who, "RemoveMember", variables)


OPERATIONS: Final[dict[str, tuple[Operation, dict[str, str]]]] = {
    "read device": (read_device, READ),
    "update device": (update_device, WRITE),
    "delete device": (delete_device, WRITE),
    "rotate credentials": (rotate_credentials, WRITE),
    "create device in organization": (create_device_in_organization, WRITE),
    "read twin": (read_twin, READ),
    "update desired state": (update_desired_state, WRITE),
    "create alert rule": (create_alert_rule, WRITE),
    "list alert rules": (list_alert_rules, READ),
    "delete alert rule": (delete_alert_rule, WRITE),
    "read dashboard": (read_dashboard, DASHBOARD_READ),
    "update dashboard": (update_dashboard, DASHBOARD_WRITE),
    "delete dashboard": (delete_dashboard, DASHBOARD_WRITE),
    "create dashboard in organization": (create_dashboard_in_organization, DASHBOARD_CREATE),
    "add member": (add_member_op, MEMBERS),
    "remove member": (remove_member_op, MEMBERS),
}


@pytest.mark.parametrize("who", ROLES)
@pytest.mark.parametrize("operation", sorted(OPERATIONS))
async def test_matrix_cell(api: Api, operation: str, who: str) -> None:
    team = await make_team(api)
    run, expected = OPERATIONS[operation]
    result = await run(api, team, team.session(who))
    if expected[who] == OK:
        assert result.errors == [], f"{operation} by {who}: {result.errors}"
    else:
        assert result.code == expected[who], f"{operation} by {who}"


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
@pytest.mark.parametrize("who", ROLES)
async def test_matrix_cell_subscribe_readings(
    api: Api, api_server: str, redis: Redis, who: str, protocol: str
) -> None:
    team = await make_team(api)
    device_id = team.device.id
    async with client(api_server, team.session(who), protocol) as ws:
        await ws.subscribe("1", op("ReadingAdded"), {"deviceId": device_id})
        if READ[who] != OK:
            kind, op_id, payload = await ws.receive()
            assert (kind, op_id) == ("error", "1")
            errors = payload if isinstance(payload, list) else [payload]
            assert [error["extensions"]["code"] for error in errors] == [READ[who]]
            return
        await wait_numsub(redis, device_channel("readings", device_id), 1)
        # As the worker publishes it: the device's organization names its owner.
        await publish(redis, reading_event(device_id, team.organization_id, 3.0))
        assert await ws.next_data() == expected_reading(device_id, 3.0)


async def test_viewer_denied_write_changes_nothing(api: Api) -> None:
    team = await make_team(api)
    assert (await update_device(api, team, team.viewer)).code == "FORBIDDEN"
    assert (await delete_device(api, team, team.viewer)).code == "FORBIDDEN"
    device = (await read_device(api, team, team.owner)).data["device"]
    assert device["name"] == "sensor"
