"""The audit log: every security-relevant action leaves one entry (who, when, what,
details without secrets); a user reads its own, an ADMIN all; newest first, keyset pages;
kept AUDIT_RETENTION_DAYS (a TTL index)."""

from __future__ import annotations

import json
from typing import Any

from bson import ObjectId

from models.audit import RETENTION_INDEX, AuditEntry, apply_retention
from tests.client import Api
from tests.contract import op
from tests.factories import PASSWORD, admin_and_user, create_device, register
from tests.integration.accounts.helpers import create_key


async def audit_log(api: Api, token: str, **variables: Any) -> list[dict[str, Any]]:
    """Every entry the token's user may read, newest first (all pages)."""
    nodes: list[dict[str, Any]] = []
    after = None
    while True:
        result = await api.execute(op("AuditLog"), {**variables, "after": after}, token=token)
        page = result.data["auditLog"]
        nodes += [edge["node"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return nodes
        after = page["pageInfo"]["endCursor"]


def actions(nodes: list[dict[str, Any]]) -> list[str]:
    return [node["action"] for node in nodes]


async def test_audit_device_create_rotate_delete_recorded(api: Api) -> None:
    user = await register(api)
    device = await create_device(api, user, name="boiler")
    await api.execute(op("RotateDeviceCredentials"), {"id": device.id}, token=user.access_token)
    await api.execute(op("DeleteDevice"), {"id": device.id}, token=user.access_token)

    nodes = await audit_log(api, user.access_token)

    assert actions(nodes) == ["device.delete", "device.rotate", "device.create"]
    assert {node["targetId"] for node in nodes} == {device.id}
    assert {node["actor"]["id"] for node in nodes} == {user.user_id}
    assert nodes[0]["actor"]["email"] == user.email
    assert nodes[2]["details"] == {"name": "boiler", "type": "esp32"}
    assert nodes[1]["details"] == {"credentialsVersion": 2}
    assert nodes[0]["at"] >= nodes[1]["at"] >= nodes[2]["at"]


async def test_audit_admin_deleting_my_device_shown_to_me(api: Api) -> None:
    admin, user = await admin_and_user(api)
    device = await create_device(api, user)
    await api.execute(op("DeleteDevice"), {"id": device.id}, token=admin.access_token)

    mine = await audit_log(api, user.access_token)

    assert actions(mine) == ["device.delete", "device.create"]
    assert mine[0]["actor"] == {"id": admin.user_id, "email": admin.email}


async def test_audit_failed_login_recorded_without_password(api: Api) -> None:
    admin, user = await admin_and_user(api)
    wrong = "not-the-password-123"
    await api.execute(op("Login"), {"email": user.email.upper(), "password": wrong})
    await api.execute(op("Login"), {"email": "nobody@example.com", "password": wrong})
    await api.execute(op("Login"), {"email": user.email, "password": PASSWORD})

    mine = await audit_log(api, user.access_token)
    everything = await audit_log(api, admin.access_token)

    # The known address's owner sees the attempt on its account; nobody acted.
    assert actions(mine) == ["login.failed"]
    assert mine[0]["actor"] is None
    assert mine[0]["targetId"] == user.user_id
    assert mine[0]["details"] == {"email": user.email.upper(), "clientAddress": "127.0.0.1"}
    # An unknown address: only an ADMIN sees it.
    unknown = [n for n in everything if n["details"].get("email") == "nobody@example.com"]
    assert len(unknown) == 1 and unknown[0]["targetId"] is None
    stored = json.dumps([str(doc) for doc in await AuditEntry.find_all().to_list()])
    assert wrong not in stored and PASSWORD not in stored


async def test_audit_password_email_role_changes_recorded(api: Api) -> None:
    admin, user = await admin_and_user(api)
    new_password = "a brand new password"
    await api.execute(
        op("UpdateUser"),
        {"id": user.user_id, "email": "renamed@example.com", "currentPassword": PASSWORD},
        token=user.access_token,
    )
    await api.execute(
        op("UpdateUser"), {"id": user.user_id, "password": new_password}, token=admin.access_token
    )
    await api.execute(
        op("UpdateUser"), {"id": user.user_id, "role": "ADMIN"}, token=admin.access_token
    )

    nodes = await audit_log(api, admin.access_token)

    assert actions(nodes) == ["user.role", "user.password", "user.email"]
    role, password, email = nodes
    assert role["details"] == {"from": "USER", "to": "ADMIN"}
    assert role["actor"]["id"] == password["actor"]["id"] == admin.user_id
    assert password["details"] == {}
    assert email["details"] == {"from": user.email, "to": "renamed@example.com"}
    assert email["actor"]["id"] == user.user_id
    assert {n["targetId"] for n in nodes} == {user.user_id}
    stored = json.dumps([str(doc) for doc in await AuditEntry.find_all().to_list()])
    assert new_password not in stored and PASSWORD not in stored


async def test_audit_api_key_create_revoke_recorded_without_key(api: Api) -> None:
    user = await register(api)
    key, node = await create_key(api, user, ["WRITE"], expires_in_days=7)
    await api.execute(op("RevokeApiKey"), {"id": node["id"]}, token=user.access_token)

    nodes = await audit_log(api, user.access_token)

    assert actions(nodes) == ["apikey.revoke", "apikey.create"]
    assert {n["targetId"] for n in nodes} == {node["id"]}
    assert nodes[1]["details"] == {
        "name": "WRITE key",
        "scopes": ["WRITE"],
        "expiresAt": nodes[1]["details"]["expiresAt"],
    }
    assert nodes[1]["details"]["expiresAt"].startswith(node["expiresAt"][:16])
    assert nodes[0]["details"] == {"name": "WRITE key"}
    stored = json.dumps(await AuditEntry.get_pymongo_collection().find({}).to_list(), default=str)
    assert key not in stored and key.split("_", 2)[2] not in stored


async def test_audit_no_secret_in_any_entry(api: Api) -> None:
    """Every secret this test handles, searched for in every stored entry and answer."""
    admin, user = await admin_and_user(api)
    new_password = "yet another password"
    device = await create_device(api, user)
    rotated = await api.execute(
        op("RotateDeviceCredentials"), {"id": device.id}, token=user.access_token
    )
    credentials = rotated.data["rotateDeviceCredentials"]
    key, node = await create_key(api, user, ["READ"])
    await api.execute(op("Me"), token=key)
    await api.execute(op("RevokeApiKey"), {"id": node["id"]}, token=user.access_token)
    await api.execute(op("Login"), {"email": user.email, "password": new_password})
    await api.execute(
        op("UpdateUser"),
        {"id": user.user_id, "password": new_password, "currentPassword": PASSWORD},
        token=user.access_token,
    )
    secrets = [
        PASSWORD,
        new_password,
        device.mqtt_password,
        device.token,
        credentials["mqttPassword"],
        credentials["token"],
        key,
        key.split("_", 2)[2],
        user.access_token,
        user.refresh_token,
        admin.access_token,
    ]

    raw = await AuditEntry.get_pymongo_collection().find({}).to_list()
    answer = json.dumps(await audit_log(api, admin.access_token))

    assert len(raw) == 6  # device.create, device.rotate, apikey.create/.revoke, login, password
    stored = json.dumps(raw, default=str)
    for secret in secrets:
        assert secret not in stored
        assert secret not in answer


async def test_audit_other_user_cannot_read_my_entries(api: Api) -> None:
    me = await register(api)
    other = await register(api)
    device = await create_device(api, me)
    await create_key(api, me, ["READ"])
    await create_device(api, other)

    theirs = await audit_log(api, other.access_token)

    assert actions(theirs) == ["device.create"]
    assert device.id not in json.dumps(theirs)
    # Not through another organization id either: NOT_FOUND, as for any unknown one.
    result = await api.execute(
        op("AuditLog"), {"organizationId": me.user_id}, token=other.access_token
    )
    assert result.code == "NOT_FOUND"


async def test_audit_admin_reads_every_entry(api: Api) -> None:
    admin, user = await admin_and_user(api)
    other = await register(api)
    await create_device(api, user)
    await create_device(api, other)

    nodes = await audit_log(api, admin.access_token)

    assert sorted(n["actor"]["id"] for n in nodes) == sorted([user.user_id, other.user_id])


async def test_audit_organization_log_not_found_until_organizations(api: Api) -> None:
    admin, _user = await admin_and_user(api)
    result = await api.execute(
        op("AuditLog"), {"organizationId": str(ObjectId())}, token=admin.access_token
    )
    assert result.code == "NOT_FOUND"
    assert result.message == "Organization not found."


async def test_audit_log_pages_newest_first_without_repeats(api: Api) -> None:
    user = await register(api)
    for n in range(5):
        await create_device(api, user, name=f"d{n}")

    first = await api.execute(op("AuditLog"), {"first": 2}, token=user.access_token)
    page = first.data["auditLog"]
    await create_device(api, user, name="late")  # newer: never shifts the pages after
    rest = await audit_log(api, user.access_token, first=2)
    after_cursor = await audit_log(api, user.access_token)

    names = [e["node"]["details"]["name"] for e in page["edges"]]
    assert names == ["d4", "d3"] and page["pageInfo"]["hasNextPage"]
    follow = await api.execute(
        op("AuditLog"),
        {"first": 10, "after": page["pageInfo"]["endCursor"]},
        token=user.access_token,
    )
    assert [e["node"]["details"]["name"] for e in follow.data["auditLog"]["edges"]] == [
        "d2",
        "d1",
        "d0",
    ]
    assert [n["details"]["name"] for n in rest] == ["late", "d4", "d3", "d2", "d1", "d0"]
    assert len(after_cursor) == 6


async def test_audit_log_bad_cursor_bad_input(api: Api) -> None:
    user = await register(api)
    result = await api.execute(
        op("AuditLog"), {"after": "bm90LWEtY3Vyc29y"}, token=user.access_token
    )
    assert result.code == "BAD_USER_INPUT"


async def test_audit_log_unauthenticated(api: Api) -> None:
    assert (await api.execute(op("AuditLog"))).code == "UNAUTHENTICATED"


async def test_audit_retention_ttl_index_follows_setting(api: Api) -> None:
    info = await AuditEntry.get_pymongo_collection().index_information()
    assert info[RETENTION_INDEX]["key"] == [("timestamp", 1)]
    assert info[RETENTION_INDEX]["expireAfterSeconds"] == 365 * 86400

    await apply_retention(30)
    try:
        info = await AuditEntry.get_pymongo_collection().index_information()
        assert info[RETENTION_INDEX]["expireAfterSeconds"] == 30 * 86400
    finally:
        await apply_retention(365)


async def test_audit_action_with_api_key_names_the_key(api: Api) -> None:
    user = await register(api)
    key, node = await create_key(api, user, ["WRITE"])
    created = await api.execute(op("CreateDevice"), {"name": "k", "type": "esp32"}, token=key)
    device_id = created.data["createDevice"]["device"]["id"]
    # The same user's next action with its password session names no key.
    await api.execute(op("DeleteDevice"), {"id": device_id}, token=user.access_token)

    nodes = await audit_log(api, user.access_token)

    assert actions(nodes) == ["device.delete", "device.create", "apikey.create"]
    assert nodes[1]["details"] == {"name": "k", "type": "esp32", "apiKeyId": node["id"]}
    assert nodes[1]["actor"]["id"] == user.user_id
    assert "apiKeyId" not in nodes[0]["details"]


async def test_audit_command_send_recorded(api: Api) -> None:
    user = await register(api)
    device = await create_device(api, user)
    sent = await api.execute(
        op("SendCommand"),
        {"deviceId": device.id, "name": "reboot", "params": {"delay": 1}},
        token=user.access_token,
    )
    command_id = sent.data["sendCommand"]["id"]
    nodes = await audit_log(api, user.access_token)
    assert actions(nodes)[0] == "command.send"
    assert nodes[0]["targetId"] == command_id
    assert nodes[0]["details"] == {"name": "reboot", "deviceId": device.id}
