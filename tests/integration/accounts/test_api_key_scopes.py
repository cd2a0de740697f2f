"""What an API key may run, scope by scope (the table in docs/access.md#api-keys):
READ queries and subscriptions, WRITE also the device, rule and dashboard mutations,
INGEST no GraphQL at all; no key changes the account, its keys or anything an ADMIN
alone may do. A refused operation changes nothing."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from models.alerts import AlertRule
from models.api_keys import ApiKey
from models.dashboards import Dashboard
from models.devices import Device
from tests.client import Api, Result
from tests.contract import op
from tests.factories import (
    PASSWORD,
    CreatedDevice,
    Session,
    admin_and_user,
    create_device,
    register,
)
from tests.integration.accounts.helpers import create_key, with_key
from tests.integration.api.test_websocket import LEGACY_WS, TRANSPORT_WS, ws_url
from tests.integration.graph.test_subscriptions import (
    client,
    expected_reading,
    publish,
    reading_event,
)
from tests.integration.security.test_revocation import subscribed

OK = "ok"
SCOPES = ("READ", "WRITE", "INGEST")


@dataclass(frozen=True)
class Setup:
    api: Api
    user: Session
    device: CreatedDevice
    key: str
    key_id: str


type Call = Callable[[Setup], Awaitable[Result]]


def run(name: str, variables: Callable[[Setup], dict[str, Any]] | None = None) -> Call:
    async def call(s: Setup) -> Result:
        return await s.api.execute(op(name), variables(s) if variables else None, token=s.key)

    return call


# (case, the call, expected per scope: OK or the error code)
CASES: list[tuple[str, Call, dict[str, str]]] = [
    ("query Devices", run("Devices"), {"READ": OK, "WRITE": OK, "INGEST": "FORBIDDEN"}),
    ("query Me", run("Me"), {"READ": OK, "WRITE": OK, "INGEST": "FORBIDDEN"}),
    (
        "query Readings",
        run("Readings", lambda s: {"deviceId": s.device.id}),
        {"READ": OK, "WRITE": OK, "INGEST": "FORBIDDEN"},
    ),
    ("query ApiKeys", run("ApiKeys"), {"READ": OK, "WRITE": OK, "INGEST": "FORBIDDEN"}),
    ("query AuditLog", run("AuditLog"), {"READ": OK, "WRITE": OK, "INGEST": "FORBIDDEN"}),
    (
        "devices: CreateDevice",
        run("CreateDevice", lambda s: {"name": "by key", "type": "esp32"}),
        {"READ": "FORBIDDEN", "WRITE": OK, "INGEST": "FORBIDDEN"},
    ),
    (
        "devices: DeleteDevice",
        run("DeleteDevice", lambda s: {"id": s.device.id}),
        {"READ": "FORBIDDEN", "WRITE": OK, "INGEST": "FORBIDDEN"},
    ),
    (
        "devices: RotateDeviceCredentials",
        run("RotateDeviceCredentials", lambda s: {"id": s.device.id}),
        {"READ": "FORBIDDEN", "WRITE": OK, "INGEST": "FORBIDDEN"},
    ),
    (
        "rules: CreateAlertRule",
        run("CreateAlertRule", lambda s: {"deviceId": s.device.id, "metric": "t", "max": 5}),
        {"READ": "FORBIDDEN", "WRITE": OK, "INGEST": "FORBIDDEN"},
    ),
    (
        "dashboards: CreateDashboard",
        run(
            "CreateDashboard",
            lambda s: {"name": "k", "config": {"layout": {"columns": 12}, "widgets": []}},
        ),
        {"READ": "FORBIDDEN", "WRITE": OK, "INGEST": "FORBIDDEN"},
    ),
    *[
        (
            f"account: {name}",
            run(name, variables),
            dict.fromkeys(SCOPES, "FORBIDDEN"),
        )
        for name, variables in [
            (
                "UpdateUser",
                lambda s: {"id": s.user.user_id, "password": "n" * 20, "currentPassword": PASSWORD},
            ),
            (
                "UpdateUser",
                lambda s: {
                    "id": s.user.user_id,
                    "email": "taken@example.com",
                    "currentPassword": PASSWORD,
                },
            ),
            ("CreateApiKey", lambda s: {"name": "minted", "scopes": ["READ", "WRITE"]}),
            ("RevokeApiKey", lambda s: {"id": s.key_id}),
            ("Logout", None),
        ]
    ],
]


async def snapshot(user: Session) -> dict[str, int]:
    """What a refused operation must leave as it was."""
    return {
        "devices": await Device.get_pymongo_collection().count_documents({}),
        "rules": await AlertRule.get_pymongo_collection().count_documents({}),
        "dashboards": await Dashboard.get_pymongo_collection().count_documents({}),
        "keys": await ApiKey.get_pymongo_collection().count_documents({}),
    }


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize(("case", "call", "expected"), CASES, ids=[c[0] for c in CASES])
async def test_api_key_scope_matrix(
    api: Api, scope: str, case: str, call: Call, expected: dict[str, str]
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    key, node = await create_key(api, user, [scope])
    setup = Setup(api, user, device, key, node["id"])
    before = await snapshot(user)

    result = await call(setup)

    if expected[scope] == OK:
        assert result.codes == [], (case, result.errors)
    else:
        assert result.codes == [expected[scope]], (case, result.errors)
        assert result.body["data"] is None
        assert await snapshot(user) == before
        # The account is untouched: its password and its session still work.
        login = await api.execute(op("Login"), {"email": user.email, "password": PASSWORD})
        assert login.codes == []
        assert (await api.execute(op("Me"), token=user.access_token)).codes == []


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
@pytest.mark.parametrize("scope", ["READ", "WRITE"])
async def test_api_key_scope_subscription_allowed(
    api: Api, api_server: str, redis: Redis, scope: str, protocol: str
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    key, _ = await create_key(api, user, [scope])
    async with client(api_server, with_key(user, key), protocol) as ws:
        await subscribed(ws, redis, device.id)
        await publish(redis, reading_event(device.id, user.user_id))
        assert await ws.next_data() == expected_reading(device.id)


async def test_api_key_scope_ingest_websocket_refused_transport_ws(
    api: Api, api_server: str
) -> None:
    user = await register(api)
    key, _ = await create_key(api, user, ["INGEST"])
    async with connect(ws_url(api_server), subprotocols=[TRANSPORT_WS]) as ws:  # type: ignore[list-item]
        init = {"authorization": f"Bearer {key}"}
        await ws.send(json.dumps({"type": "connection_init", "payload": init}))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def test_api_key_scope_ingest_websocket_refused_legacy_ws(api: Api, api_server: str) -> None:
    user = await register(api)
    key, _ = await create_key(api, user, ["INGEST"])
    async with connect(ws_url(api_server), subprotocols=[LEGACY_WS]) as ws:  # type: ignore[list-item]
        init = {"authorization": f"Bearer {key}"}
        await ws.send(json.dumps({"type": "connection_init", "payload": init}))
        error = json.loads(await ws.recv(decode=True))
    assert error["type"] == "connection_error"
    assert error["payload"]["code"] == "FORBIDDEN"


async def test_api_key_scope_write_mutation_over_websocket_allowed_account_refused(
    api: Api, api_server: str
) -> None:
    user = await register(api)
    key, _ = await create_key(api, user, ["WRITE"])
    async with client(api_server, with_key(user, key)) as ws:
        await ws.subscribe("1", op("CreateDevice"), {"name": "over ws", "type": "esp32"})
        created = await ws.next_data()
        await ws.subscribe("2", op("CreateApiKey"), {"name": "minted", "scopes": ["READ"]})
        kind, got_id, payload = await ws.receive()
        while got_id != "2":  # operation 1's complete
            kind, got_id, payload = await ws.receive()
    assert created["createDevice"]["device"]["id"]
    errors = payload if kind == "error" else payload["errors"]
    assert [e["extensions"]["code"] for e in errors] == ["FORBIDDEN"]
    assert await ApiKey.get_pymongo_collection().count_documents({}) == 1


async def test_api_key_scope_mixed_mutation_refused_whole(api: Api) -> None:
    user = await register(api)
    key, _ = await create_key(api, user, ["WRITE"])
    mixed = (
        'mutation { createDevice(input: {name: "a", type: "b"}) { device { id } } '
        "...F } fragment F on Mutation { logout }"
    )

    result = await api.execute(mixed, token=key)

    assert result.code == "FORBIDDEN"
    assert "logout" in result.message
    assert await Device.get_pymongo_collection().count_documents({}) == 0
    assert (await api.execute(op("Me"), token=user.access_token)).codes == []


async def test_api_key_scope_admin_operations_refused_to_admin_key(api: Api) -> None:
    admin, user = await admin_and_user(api)
    key, _ = await create_key(api, admin, ["READ", "WRITE"])

    # With its password session the ADMIN gets as far as the lookup (NOT_FOUND).
    by_token = await api.execute(op("DeleteFirmware"), {"id": "0" * 24}, token=admin.access_token)
    by_key = await api.execute(op("DeleteFirmware"), {"id": "0" * 24}, token=key)
    promote = await api.execute(op("UpdateUser"), {"id": user.user_id, "role": "ADMIN"}, token=key)

    assert by_token.code == "NOT_FOUND"
    assert by_key.code == "FORBIDDEN"
    assert promote.code == "FORBIDDEN"
    me = await api.execute(op("User"), {"id": user.user_id}, token=admin.access_token)
    assert me.data["user"]["role"] == "USER"
