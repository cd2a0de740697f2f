"""The contract's dashboards operations, end to end over HTTP against the real stack."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

import pytest
from beanie import PydanticObjectId
from bson import ObjectId

from models.dashboards import Dashboard
from tests.client import Api, Result
from tests.contract import op
from tests.factories import Session, admin_and_user, create_device, register

DASHBOARD = "query ($id: ID!) { dashboard(id: $id) { id name config createdAt updatedAt } }"
MALFORMED_IDS = ["not-an-id", "123", "zzzzzzzzzzzzzzzzzzzzzzzz", "0" * 25, ""]
OPTIONS: dict[str, dict[str, Any]] = {
    "line_chart": {"range": "24h", "bucket": "15m"},
    "gauge": {"min": -10, "max": 42.5},
    "table": {"limit": 25},
    "map": {},
}

# ------------------------------------------------------------------ helpers


def widget(device_id: str, *, id: str = "w1", kind: str = "line_chart", **changes: Any) -> dict:
    """A valid widget of `kind`, with `changes` applied (None removes a key)."""
    body: dict[str, Any] = {
        "id": id,
        "kind": kind,
        "title": f"{kind} {id}",
        "devices": [device_id],
        "metrics": ["temperature"],
        "position": {"x": 0, "y": 0, "w": 6, "h": 4},
        "options": dict(OPTIONS[kind]),
    }
    body.update(changes)
    return {key: value for key, value in body.items() if value is not None}


def config(*widgets: dict, columns: int = 12) -> dict[str, Any]:
    return {"layout": {"columns": columns}, "widgets": list(widgets)}


async def create(api: Api, session: Session, name: str, body: Any) -> Result:
    return await api.execute(
        op("CreateDashboard"), {"name": name, "config": body}, token=session.access_token
    )


async def create_ok(api: Api, session: Session, body: Any, name: str = "Home") -> dict[str, Any]:
    return (await create(api, session, name, body)).data["createDashboard"]  # type: ignore[no-any-return]


async def update(api: Api, session: Session, id: str, **variables: Any) -> Result:
    return await api.execute(
        op("UpdateDashboard"), {"id": id, **variables}, token=session.access_token
    )


async def listed(api: Api, session: Session) -> list[dict[str, Any]]:
    result = await api.execute(op("Dashboards"), token=session.access_token)
    return result.data["dashboards"]  # type: ignore[no-any-return]


async def stored(dashboard_id: str) -> Dashboard:
    document = await Dashboard.get(PydanticObjectId(dashboard_id))
    assert document is not None, f"dashboard {dashboard_id} is not stored"
    return document


def assert_bad_input(result: Result, path: str, reason: str = "") -> None:
    assert result.code == "BAD_USER_INPUT", result.errors
    assert result.message.startswith(f"{path}: "), result.message
    assert reason in result.message, result.message


def same_json(a: Any, b: Any) -> bool:
    """Equal values, key order and int/float kinds included."""
    return json.dumps(a) == json.dumps(b)


async def user_with_device(api: Api) -> tuple[Session, str]:
    session = await register(api)
    return session, (await create_device(api, session)).id


# ------------------------------------------------------------------ CreateDashboard


async def test_create_dashboard_returns_stored_dashboard(api: Api) -> None:
    session, device_id = await user_with_device(api)
    body = config(widget(device_id))
    created = await create_ok(api, session, body, name="  Greenhouse ")
    assert created["name"] == "Greenhouse"
    assert created["config"] == body
    assert created["createdAt"] == created["updatedAt"]
    document = await stored(created["id"])
    assert str(document.owner_id) == session.user_id
    assert document.config == body


async def test_create_dashboard_valid_config_round_trips_exactly(api: Api) -> None:
    session, device_id = await user_with_device(api)
    other_device = (await create_device(api, session, name="second")).id
    body = config(
        widget(device_id, id="chart", position={"x": 0, "y": 0, "w": 24, "h": 6}),
        widget(device_id, id="g-1", kind="gauge", title=None, options={"max": 100, "min": 0.5}),
        widget(
            other_device,
            id="table_1",
            kind="table",
            metrics=["temp.inside", "rh-2", "co2_ppm"],
            position={"y": 6, "x": 20, "h": 1, "w": 4},
        ),
        widget(device_id, id="map", kind="map", metrics=None, options=None, title="Wo? ☃"),
        widget(other_device, id="map2", kind="map", devices=[other_device, device_id]),
        columns=24,
    )
    created = await create_ok(api, session, body)
    assert same_json(created["config"], body)
    [listed_one] = await listed(api, session)
    assert same_json(listed_one["config"], body)
    read = await api.execute(DASHBOARD, {"id": created["id"]}, token=session.access_token)
    assert same_json(read.data["dashboard"]["config"], body)


async def test_create_dashboard_empty_widgets_accepted(api: Api) -> None:
    session = await register(api)
    created = await create_ok(api, session, config())
    assert created["config"] == {"layout": {"columns": 12}, "widgets": []}


async def test_create_dashboard_admin_may_name_any_device(api: Api) -> None:
    admin, user = await admin_and_user(api)
    users_device = (await create_device(api, user)).id
    created = await create_ok(api, admin, config(widget(users_device)))
    assert created["config"]["widgets"][0]["devices"] == [users_device]
    # But not one that does not exist.
    missing = await create(api, admin, "Ghost", config(widget(str(ObjectId()))))
    assert_bad_input(missing, "config.widgets[0].devices[0]", "not a device you own")


@pytest.mark.parametrize(
    ("change", "path", "reason"),
    [
        ({"kind": "pie_chart"}, "config.widgets[1].kind", "unknown widget kind"),
        ({"kind": None}, "config.widgets[1].kind", "required"),
        ({"position": {"x": 10, "y": 0, "w": 3, "h": 2}}, "config.widgets[1].position.w", "x + w"),
        ({"position": {"x": 12, "y": 0, "w": 1, "h": 2}}, "config.widgets[1].position.x", ""),
        ({"position": {"x": 0, "y": 0, "w": 0, "h": 2}}, "config.widgets[1].position.w", ""),
        ({"position": {"x": 0, "y": 0, "w": 2}}, "config.widgets[1].position.h", "required"),
        ({"position": {"x": "0", "y": 0, "w": 2, "h": 1}}, "config.widgets[1].position.x", ""),
        ({"id": "w1"}, "config.widgets[1].id", "duplicate"),
        ({"id": "has space"}, "config.widgets[1].id", "not a widget id"),
        ({"metrics": ["ok", "bad metric!"]}, "config.widgets[1].metrics[1]", "not a metric name"),
        ({"metrics": ["m" * 65]}, "config.widgets[1].metrics[0]", "not a metric name"),
        ({"metrics": []}, "config.widgets[1].metrics", "at least 1"),
        ({"metrics": [f"m{i}" for i in range(21)]}, "config.widgets[1].metrics", "at most 20"),
        ({"metrics": ["a", "a"]}, "config.widgets[1].metrics[1]", "listed twice"),
        ({"devices": []}, "config.widgets[1].devices", "at least 1"),
        ({"devices": ["nope"]}, "config.widgets[1].devices[0]", "not a valid device id"),
        ({"title": "t" * 101}, "config.widgets[1].title", "1..100"),
        ({"colour": "red"}, "config.widgets[1].colour", "unknown key"),
        ({"options": {"range": "2h", "bucket": "1m"}}, "config.widgets[1].options.range", ""),
        ({"options": {"range": "7d", "bucket": "10s"}}, "config.widgets[1].options.bucket", ""),
        ({"options": {"range": "1h", "bucket": "1d"}}, "config.widgets[1].options.bucket", ""),
        ({"options": {"range": "1h"}}, "config.widgets[1].options.bucket", "required"),
        (
            {"options": {"range": "1h", "bucket": "1m", "x": 1}},
            "config.widgets[1].options.x",
            "unknown key",
        ),
        (
            {"kind": "gauge", "options": {"min": 5, "max": 5}},
            "config.widgets[1].options.max",
            "greater than options.min",
        ),
        (
            {"kind": "gauge", "options": {"min": 0, "max": True}},
            "config.widgets[1].options.max",
            "",
        ),
        ({"kind": "table", "options": {"limit": 101}}, "config.widgets[1].options.limit", ""),
        ({"kind": "map", "options": {"zoom": 3}}, "config.widgets[1].options.zoom", "unknown key"),
    ],
)
async def test_create_dashboard_bad_widget_rejected_with_path(
    api: Api, change: dict[str, Any], path: str, reason: str
) -> None:
    session, device_id = await user_with_device(api)
    good = widget(device_id, id="w1")
    bad = widget(device_id, id="w2", position={"x": 6, "y": 0, "w": 6, "h": 4})
    bad.update(change)
    bad = {key: value for key, value in bad.items() if value is not None}
    result = await create(api, session, "Bad", config(good, bad))
    assert_bad_input(result, path, reason)
    assert await Dashboard.find_all().count() == 0


@pytest.mark.parametrize(
    ("body", "path", "reason"),
    [
        ([], "config", "must be an object"),
        ("text", "config", "must be an object"),
        ({"widgets": []}, "config.layout", "required"),
        ({"layout": {"columns": 12}}, "config.widgets", "required"),
        ({"layout": {"columns": 25}, "widgets": []}, "config.layout.columns", ""),
        ({"layout": {"columns": 0}, "widgets": []}, "config.layout.columns", ""),
        (
            {"layout": {"columns": 12}, "widgets": [], "theme": "dark"},
            "config.theme",
            "unknown key",
        ),
        ({"layout": {"columns": 12, "rows": 3}, "widgets": []}, "config.layout.rows", "unknown"),
        ({"layout": {"columns": 12}, "widgets": [7]}, "config.widgets[0]", "must be an object"),
    ],
)
async def test_create_dashboard_bad_config_rejected_with_path(
    api: Api, body: Any, path: str, reason: str
) -> None:
    session = await register(api)
    assert_bad_input(await create(api, session, "Bad", body), path, reason)
    assert await Dashboard.find_all().count() == 0


async def test_create_dashboard_too_many_widgets_rejected(api: Api) -> None:
    session, device_id = await user_with_device(api)
    widgets = [widget(device_id, id=f"w{i}", title=None) for i in range(51)]
    assert_bad_input(await create(api, session, "Big", config(*widgets)), "config.widgets", "50")
    # Fifty is the limit, inclusive.
    await create_ok(api, session, config(*widgets[:50]))
    assert await Dashboard.find_all().count() == 1


async def test_create_dashboard_oversized_config_rejected(api: Api) -> None:
    session, device_id = await user_with_device(api)
    # Valid in every other respect: big through 50 widgets of 20 long metric names and a
    # title of 100 three-byte characters each.
    metrics = [f"{i:02d}".ljust(64, "m") for i in range(20)]
    widgets = [widget(device_id, id=f"w{i}", title="☃" * 100, metrics=metrics) for i in range(50)]
    body = config(*widgets)
    assert len(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()) > 65536
    assert_bad_input(await create(api, session, "Huge", body), "config", "at most 65536 bytes")
    assert await Dashboard.find_all().count() == 0


async def test_create_dashboard_foreign_device_rejected_like_missing_one(api: Api) -> None:
    await register(api)  # the first user is the ADMIN, who may name any device
    session_a, device_a = await user_with_device(api)
    _, device_b = await user_with_device(api)
    missing = str(ObjectId())
    foreign = await create(
        api,
        session_a,
        "Spy",
        config(widget(device_a), widget(device_a, id="w2", devices=[device_a, device_b])),
    )
    assert_bad_input(foreign, "config.widgets[1].devices[1]", "not a device you own")
    nonexistent = await create(
        api,
        session_a,
        "Ghost",
        config(widget(device_a), widget(device_a, id="w2", devices=[device_a, missing])),
    )
    assert_bad_input(nonexistent, "config.widgets[1].devices[1]", "not a device you own")
    assert foreign.message == nonexistent.message
    assert await Dashboard.find_all().count() == 0


@pytest.mark.parametrize(
    ("name", "field"),
    [("", "name"), ("   ", "name"), ("n" * 101, "name"), ("bad\x00name", "name")],
)
async def test_create_dashboard_bad_name_rejected(api: Api, name: str, field: str) -> None:
    session = await register(api)
    assert_bad_input(await create(api, session, name, config()), field)
    assert await Dashboard.find_all().count() == 0


async def test_create_dashboard_over_quota_conflict(api: Api) -> None:
    session = await register(api)
    owner = PydanticObjectId(session.user_id)
    await Dashboard.insert_many(
        [Dashboard(owner_id=owner, name=f"d{i}", config=config()) for i in range(100)]
    )
    result = await create(api, session, "One too many", config())
    assert result.code == "CONFLICT", result.errors
    assert await Dashboard.find_all().count() == 100
    # Another user's quota is their own.
    await create_ok(api, await register(api), config())


# ------------------------------------------------------------------ Dashboards / dashboard


async def test_list_dashboards_own_only_newest_first(api: Api) -> None:
    admin, user = await admin_and_user(api)
    first = await create_ok(api, user, config(), name="first")
    second = await create_ok(api, user, config(), name="second")
    admins = await create_ok(api, admin, config(), name="admin's")
    assert [d["id"] for d in await listed(api, user)] == [second["id"], first["id"]]
    # Dashboards are personal: an ADMIN sees only its own.
    assert [d["id"] for d in await listed(api, admin)] == [admins["id"]]
    assert await listed(api, await register(api)) == []


async def test_get_dashboard_returns_own(api: Api) -> None:
    session = await register(api)
    created = await create_ok(api, session, config(), name="mine")
    result = await api.execute(DASHBOARD, {"id": created["id"]}, token=session.access_token)
    assert result.data["dashboard"] == created


# ------------------------------------------------------------------ UpdateDashboard


async def test_update_dashboard_name_and_config_bumps_updated_at(api: Api) -> None:
    session, device_id = await user_with_device(api)
    created = await create_ok(api, session, config())
    await asyncio.sleep(0.01)  # updatedAt has millisecond precision
    new_config = config(widget(device_id, kind="gauge"), columns=6)
    result = await update(api, session, created["id"], name="Renamed", config=new_config)
    updated = result.data["updateDashboard"]
    assert updated["name"] == "Renamed"
    assert same_json(updated["config"], new_config)
    assert datetime.fromisoformat(updated["updatedAt"]) > datetime.fromisoformat(
        created["updatedAt"]
    )
    document = await stored(created["id"])
    assert document.name == "Renamed"
    assert document.config == new_config
    assert document.created_at == datetime.fromisoformat(created["createdAt"])
    assert document.updated_at == datetime.fromisoformat(updated["updatedAt"])


async def test_update_dashboard_name_only_keeps_config(api: Api) -> None:
    session, device_id = await user_with_device(api)
    body = config(widget(device_id))
    created = await create_ok(api, session, body)
    result = await update(api, session, created["id"], name="Only the name")
    updated = result.data["updateDashboard"]
    assert (updated["name"], updated["config"]) == ("Only the name", body)


async def test_update_dashboard_config_only_keeps_name(api: Api) -> None:
    session = await register(api)
    created = await create_ok(api, session, config(), name="Keep")
    result = await update(api, session, created["id"], config=config(columns=3))
    updated = result.data["updateDashboard"]
    assert (updated["name"], updated["config"]) == ("Keep", config(columns=3))


async def test_update_dashboard_nothing_given_changes_nothing(api: Api) -> None:
    session = await register(api)
    created = await create_ok(api, session, config())
    updated = (await update(api, session, created["id"])).data["updateDashboard"]
    assert updated["updatedAt"] == created["updatedAt"]
    assert updated["name"] == created["name"]


@pytest.mark.parametrize(
    ("variables", "path"),
    [
        ({"name": ""}, "name"),
        ({"config": {"layout": {"columns": 12}, "widgets": [], "x": 1}}, "config.x"),
        ({"name": "fine", "config": {"layout": {}, "widgets": []}}, "config.layout.columns"),
    ],
)
async def test_update_dashboard_bad_input_changes_nothing(
    api: Api, variables: dict[str, Any], path: str
) -> None:
    session = await register(api)
    created = await create_ok(api, session, config(), name="Before")
    before = await stored(created["id"])
    assert_bad_input(await update(api, session, created["id"], **variables), path)
    assert await stored(created["id"]) == before


async def test_update_dashboard_foreign_device_rejected(api: Api) -> None:
    _, session_a = await admin_and_user(api)
    _, device_b = await user_with_device(api)
    created = await create_ok(api, session_a, config())
    result = await update(api, session_a, created["id"], config=config(widget(device_b)))
    assert_bad_input(result, "config.widgets[0].devices[0]", "not a device you own")
    assert (await stored(created["id"])).config == config()


# ------------------------------------------------------------------ DeleteDashboard


async def test_delete_dashboard_removes_it(api: Api) -> None:
    session = await register(api)
    created = await create_ok(api, session, config())
    kept = await create_ok(api, session, config(), name="kept")
    result = await api.execute(
        op("DeleteDashboard"), {"id": created["id"]}, token=session.access_token
    )
    assert result.data == {"deleteDashboard": True}
    assert await Dashboard.get(PydanticObjectId(created["id"])) is None
    assert [d["id"] for d in await listed(api, session)] == [kept["id"]]
    again = await api.execute(
        op("DeleteDashboard"), {"id": created["id"]}, token=session.access_token
    )
    assert again.code == "NOT_FOUND"


# ------------------------------------------------------------------ every operation


def operations(id: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (DASHBOARD, {"id": id}),
        (op("UpdateDashboard"), {"id": id, "name": "Hijacked", "config": config(columns=1)}),
        (op("DeleteDashboard"), {"id": id}),
    ]


async def test_dashboards_other_users_invisible_and_untouchable(api: Api) -> None:
    admin, user_a = await admin_and_user(api)
    user_b = await register(api)
    device_a = (await create_device(api, user_a)).id
    created = await create_ok(api, user_a, config(widget(device_a)), name="A's")
    before = await stored(created["id"])
    missing = str(ObjectId())
    for intruder in (user_b, admin):
        assert created["id"] not in [d["id"] for d in await listed(api, intruder)]
        for query, variables in operations(created["id"]):
            foreign = await api.execute(query, variables, token=intruder.access_token)
            assert foreign.code == "NOT_FOUND", foreign.errors
            absent = await api.execute(
                query, {**variables, "id": missing}, token=intruder.access_token
            )
            assert absent.code == "NOT_FOUND"
            assert foreign.message == absent.message == "Dashboard not found."
    assert await stored(created["id"]) == before


@pytest.mark.parametrize("bad_id", MALFORMED_IDS)
async def test_dashboard_operations_malformed_id_bad_input(api: Api, bad_id: str) -> None:
    session = await register(api)
    for query, variables in operations(bad_id):
        assert_bad_input(await api.execute(query, variables, token=session.access_token), "id")


async def test_dashboard_operations_without_token_unauthenticated(api: Api) -> None:
    session = await register(api)
    created = await create_ok(api, session, config())
    before = await stored(created["id"])
    for query, variables in [
        (op("CreateDashboard"), {"name": "x", "config": config()}),
        (op("Dashboards"), {}),
        *operations(created["id"]),
    ]:
        for headers in ({}, {"Authorization": "Bearer not-a-token"}):
            result = await api.execute(query, variables, headers=headers)
            assert result.code == "UNAUTHENTICATED", (query, result.errors)
    assert await Dashboard.find_all().count() == 1
    assert await stored(created["id"]) == before
