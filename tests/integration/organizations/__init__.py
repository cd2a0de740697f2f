"""Organizations, members and roles against the real stack (docs/access.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.client import Api
from tests.contract import op
from tests.factories import CreatedDevice, Session, admin_and_user, register

DASHBOARD_CONFIG: dict[str, Any] = {"layout": {"columns": 12}, "widgets": []}
# CreateDashboard with the organization (an optional input field beside the contract's).
CREATE_ORG_DASHBOARD = """mutation ($name: String!, $config: JSON!, $organizationId: ID) {
  createDashboard(input: {name: $name, config: $config, organizationId: $organizationId}) {
    id name } }"""


@dataclass(frozen=True)
class Team:
    """An organization with an OWNER, an OPERATOR and a VIEWER; a platform ADMIN and
    an outsider (a USER of no role there); a device of the organization."""

    admin: Session
    owner: Session
    operator: Session
    viewer: Session
    outsider: Session
    organization_id: str
    device: CreatedDevice

    def session(self, who: str) -> Session:
        session: Session = getattr(self, who)
        return session


async def create_organization(api: Api, session: Session, name: str = "Lab") -> str:
    result = await api.execute(op("CreateOrganization"), {"name": name}, token=session.access_token)
    organization = result.data["createOrganization"]
    assert organization["name"] == name
    assert organization["myRole"] == "OWNER"
    return str(organization["id"])


async def add_member(
    api: Api, owner: Session, organization_id: str, member: Session, role: str
) -> dict[str, Any]:
    result = await api.execute(
        op("AddMember"),
        {"organizationId": organization_id, "email": member.email, "role": role},
        token=owner.access_token,
    )
    added: dict[str, Any] = result.data["addMember"]
    return added


async def create_org_device(
    api: Api, session: Session, organization_id: str | None, name: str = "sensor"
) -> CreatedDevice:
    result = await api.execute(
        op("CreateOrgDevice"),
        {"name": name, "type": "esp32", "organizationId": organization_id},
        token=session.access_token,
    )
    payload = result.data["createDevice"]
    credentials = payload["credentials"]
    return CreatedDevice(
        id=payload["device"]["id"],
        mqtt_username=credentials["mqttUsername"],
        mqtt_password=credentials["mqttPassword"],
        token=credentials["token"],
        node=payload["device"],
    )


async def make_team(api: Api) -> Team:
    admin, owner = await admin_and_user(api)
    operator = await register(api)
    viewer = await register(api)
    outsider = await register(api)
    organization_id = await create_organization(api, owner)
    await add_member(api, owner, organization_id, operator, "OPERATOR")
    await add_member(api, owner, organization_id, viewer, "VIEWER")
    device = await create_org_device(api, owner, organization_id)
    return Team(admin, owner, operator, viewer, outsider, organization_id, device)
