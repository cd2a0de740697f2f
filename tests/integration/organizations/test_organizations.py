"""CreateOrganization, Organizations, AddMember, RemoveMember, CreateOrgDevice and
devices(filter: {organizationId}), through the API."""

from __future__ import annotations

import asyncio

from bson import ObjectId

from models.organizations import Organization
from tests.client import Api
from tests.contract import op
from tests.factories import admin_and_user, create_device, register
from tests.integration.organizations import (
    add_member,
    create_org_device,
    create_organization,
    make_team,
)


async def test_register_makes_personal_organization(api: Api) -> None:
    user = await register(api)
    result = await api.execute(op("Organizations"), token=user.access_token)
    [personal] = result.data["organizations"]
    # Its id is the user's own: devices stored before organizations belong to it.
    assert personal["id"] == user.user_id
    assert personal["myRole"] == "OWNER"
    assert personal["members"] == [
        {"user": {"id": user.user_id, "email": user.email}, "role": "OWNER"}
    ]
    stored = await Organization.get(ObjectId(user.user_id))
    assert stored is not None and stored.personal_of == ObjectId(user.user_id)


async def test_create_organization_and_list_with_members(api: Api) -> None:
    owner = await register(api)
    member = await register(api)
    organization_id = await create_organization(api, owner, "Greenhouse team")
    added = await add_member(api, owner, organization_id, member, "VIEWER")
    assert added["id"] == organization_id
    assert {(m["user"]["email"], m["role"]) for m in added["members"]} == {
        (owner.email, "OWNER"),
        (member.email, "VIEWER"),
    }
    listed = (await api.execute(op("Organizations"), token=member.access_token)).data
    by_id = {o["id"]: o for o in listed["organizations"]}
    assert set(by_id) == {member.user_id, organization_id}
    assert by_id[organization_id]["myRole"] == "VIEWER"
    assert by_id[organization_id]["name"] == "Greenhouse team"


async def test_create_organization_bad_name(api: Api) -> None:
    owner = await register(api)
    result = await api.execute(op("CreateOrganization"), {"name": "  "}, token=owner.access_token)
    assert result.code == "BAD_USER_INPUT"
    unauthenticated = await api.execute(op("CreateOrganization"), {"name": "x"})
    assert unauthenticated.code == "UNAUTHENTICATED"


async def test_add_member_unknown_email_not_found(api: Api) -> None:
    owner = await register(api)
    organization_id = await create_organization(api, owner)
    result = await api.execute(
        op("AddMember"),
        {"organizationId": organization_id, "email": "nobody@example.com", "role": "VIEWER"},
        token=owner.access_token,
    )
    assert result.code == "NOT_FOUND"
    assert result.message == "User not found."


async def test_add_member_changes_role_of_member(api: Api) -> None:
    owner = await register(api)
    member = await register(api)
    organization_id = await create_organization(api, owner)
    await add_member(api, owner, organization_id, member, "VIEWER")
    changed = await add_member(api, owner, organization_id, member, "OPERATOR")
    roles = {m["user"]["email"]: m["role"] for m in changed["members"]}
    assert roles == {owner.email: "OWNER", member.email: "OPERATOR"}


async def test_add_member_owner_only(api: Api) -> None:
    owner = await register(api)
    operator = await register(api)
    outsider = await register(api)
    organization_id = await create_organization(api, owner)
    await add_member(api, owner, organization_id, operator, "OPERATOR")
    variables = {"organizationId": organization_id, "email": outsider.email, "role": "OWNER"}
    # A member that is not OWNER sees the organization: FORBIDDEN.
    by_operator = await api.execute(op("AddMember"), variables, token=operator.access_token)
    assert by_operator.code == "FORBIDDEN"
    # Somebody else's organization, and one that does not exist, look the same.
    by_outsider = await api.execute(
        op("AddMember"),
        {"organizationId": organization_id, "email": outsider.email, "role": "OWNER"},
        token=outsider.access_token,
    )
    assert by_outsider.code == "NOT_FOUND"
    assert by_outsider.message == "Organization not found."
    missing = await api.execute(
        op("AddMember"), {**variables, "organizationId": str(ObjectId())}, token=owner.access_token
    )
    assert missing.code == "NOT_FOUND"
    assert missing.message == "Organization not found."
    bad = await api.execute(
        op("AddMember"), {**variables, "organizationId": "x"}, token=owner.access_token
    )
    assert bad.code == "BAD_USER_INPUT"


async def test_remove_member_last_owner_conflict(api: Api) -> None:
    owner = await register(api)
    second = await register(api)
    organization_id = await create_organization(api, owner)
    variables = {"organizationId": organization_id, "userId": owner.user_id}
    last = await api.execute(op("RemoveMember"), variables, token=owner.access_token)
    assert last.code == "CONFLICT"
    # Nor demoted while it is the last one.
    demoted = await api.execute(
        op("AddMember"),
        {"organizationId": organization_id, "email": owner.email, "role": "VIEWER"},
        token=owner.access_token,
    )
    assert demoted.code == "CONFLICT"
    # With a second OWNER the first may go.
    await add_member(api, owner, organization_id, second, "OWNER")
    removed = await api.execute(op("RemoveMember"), variables, token=owner.access_token)
    assert [m["user"]["email"] for m in removed.data["removeMember"]["members"]] == [second.email]
    # The personal organization's only OWNER stays too.
    personal = await api.execute(
        op("RemoveMember"),
        {"organizationId": owner.user_id, "userId": owner.user_id},
        token=owner.access_token,
    )
    assert personal.code == "CONFLICT"


async def test_remove_member_not_member_not_found_and_owner_only(api: Api) -> None:
    team_api = api
    owner = await register(team_api)
    viewer = await register(team_api)
    stranger = await register(team_api)
    organization_id = await create_organization(team_api, owner)
    await add_member(team_api, owner, organization_id, viewer, "VIEWER")
    not_member = await api.execute(
        op("RemoveMember"),
        {"organizationId": organization_id, "userId": stranger.user_id},
        token=owner.access_token,
    )
    assert not_member.code == "NOT_FOUND"
    by_viewer = await api.execute(
        op("RemoveMember"),
        {"organizationId": organization_id, "userId": owner.user_id},
        token=viewer.access_token,
    )
    assert by_viewer.code == "FORBIDDEN"
    by_stranger = await api.execute(
        op("RemoveMember"),
        {"organizationId": organization_id, "userId": viewer.user_id},
        token=stranger.access_token,
    )
    assert by_stranger.code == "NOT_FOUND"


async def test_create_org_device_personal_by_default(api: Api) -> None:
    user = await register(api)
    device = await create_org_device(api, user, None)
    assert device.node["organization"] == {"id": user.user_id, "name": "Personal"}


async def test_create_org_device_in_organization_by_role(api: Api) -> None:
    team = await make_team(api)
    assert team.device.node["organization"] == {"id": team.organization_id, "name": "Lab"}
    by_operator = await create_org_device(api, team.operator, team.organization_id, "op")
    assert by_operator.node["organization"]["id"] == team.organization_id
    variables = {"name": "v", "type": "esp32", "organizationId": team.organization_id}
    by_viewer = await api.execute(op("CreateOrgDevice"), variables, token=team.viewer.access_token)
    assert by_viewer.code == "FORBIDDEN"
    by_outsider = await api.execute(
        op("CreateOrgDevice"), variables, token=team.outsider.access_token
    )
    assert by_outsider.code == "NOT_FOUND"
    missing = await api.execute(
        op("CreateOrgDevice"),
        {**variables, "organizationId": str(ObjectId())},
        token=team.admin.access_token,
    )
    assert missing.code == "NOT_FOUND"
    # Every member lists the organization's devices; the outsider none of them.
    for who in ("owner", "operator", "viewer"):
        listed = await api.execute(
            op("FindDevices"),
            {"organizationId": team.organization_id},
            token=team.session(who).access_token,
        )
        assert listed.data["devices"]["totalCount"] == 2, who
    outsider = await api.execute(op("Devices"), token=team.outsider.access_token)
    assert outsider.data["devices"]["totalCount"] == 0


async def test_find_devices_organization_filter_narrows_member_devices(api: Api) -> None:
    _, user = await admin_and_user(api)
    other = await register(api)
    organization_id = await create_organization(api, other)
    await add_member(api, other, organization_id, user, "VIEWER")
    own = await create_device(api, user, name="own")
    team_device = await create_org_device(api, other, organization_id, name="team")
    await create_org_device(api, other, None, name="others-personal")
    everything = await api.execute(op("FindDevices"), {}, token=user.access_token)
    assert {e["node"]["name"] for e in everything.data["devices"]["edges"]} == {"own", "team"}
    in_team = await api.execute(
        op("FindDevices"), {"organizationId": organization_id}, token=user.access_token
    )
    assert [e["node"]["id"] for e in in_team.data["devices"]["edges"]] == [team_device.id]
    personal = await api.execute(
        op("FindDevices"), {"organizationId": user.user_id}, token=user.access_token
    )
    assert [e["node"]["id"] for e in personal.data["devices"]["edges"]] == [own.id]
    # The other user's personal organization: not a member.
    foreign = await api.execute(
        op("FindDevices"), {"organizationId": other.user_id}, token=user.access_token
    )
    assert foreign.code == "NOT_FOUND"


async def test_remove_each_other_at_once_one_owner_stays(api: Api) -> None:
    first = await register(api)
    second = await register(api)
    organization_id = await create_organization(api, first)
    await add_member(api, first, organization_id, second, "OWNER")
    results = await asyncio.gather(
        api.execute(
            op("RemoveMember"),
            {"organizationId": organization_id, "userId": second.user_id},
            token=first.access_token,
        ),
        api.execute(
            op("RemoveMember"),
            {"organizationId": organization_id, "userId": first.user_id},
            token=second.access_token,
        ),
    )
    # One removal wins; the other finds no other OWNER left (CONFLICT), or its caller
    # already removed (FORBIDDEN / NOT_FOUND, by how far the first had got).
    assert sum(not r.errors for r in results) == 1
    assert all(not r.errors or r.code in {"CONFLICT", "FORBIDDEN", "NOT_FOUND"} for r in results)
    stored = await Organization.get(ObjectId(organization_id))
    assert stored is not None
    assert [m.role.value for m in stored.members] == ["OWNER"]


async def test_create_device_makes_personal_organization_missing_after_crash(api: Api) -> None:
    user = await register(api)
    # As if the process died between inserting the user and its organization.
    await Organization.get_pymongo_collection().delete_one({"_id": ObjectId(user.user_id)})
    device = await create_org_device(api, user, None)
    assert device.node["organization"]["id"] == user.user_id
    stored = await Organization.get(ObjectId(user.user_id))
    assert stored is not None and [m.user_id for m in stored.members] == [ObjectId(user.user_id)]
