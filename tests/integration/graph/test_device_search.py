"""FindDevices: devices(filter) by tag, type, status and name, against the real stack."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from bson import ObjectId

from core.settings import Settings
from models.devices import Device, DeviceStatus
from models.platform import Marker
from services.device_search import SEARCH_KEYS_MARKER, backfill_search_keys
from tests.client import Api, Result
from tests.contract import op
from tests.factories import CreatedDevice, Session, admin_and_user, create_device, register
from tests.servers import serve_api


async def find(api: Api, session: Session, **variables: Any) -> Result:
    return await api.execute(op("FindDevices"), variables, token=session.access_token)


async def names(api: Api, session: Session, **variables: Any) -> list[str]:
    """Names found, newest first, checked against totalCount (every match on one page)."""
    result = await find(api, session, first=100, **variables)
    connection = result.data["devices"]
    found = [edge["node"]["name"] for edge in connection["edges"]]
    assert connection["totalCount"] == len(found)
    assert connection["pageInfo"]["hasNextPage"] is False
    return found


async def tag(api: Api, session: Session, device: CreatedDevice, *tags: str) -> None:
    result = await api.execute(
        op("UpdateDeviceMetadata"),
        {"id": device.id, "tags": list(tags)},
        token=session.access_token,
    )
    assert result.data


async def set_status(device: CreatedDevice, status: DeviceStatus) -> None:
    # What the ingest worker writes when the device connects or goes silent.
    await Device.get_pymongo_collection().update_one(
        {"_id": ObjectId(device.id)}, {"$set": {"status": status.value}}
    )


async def fleet(api: Api, session: Session) -> dict[str, CreatedDevice]:
    """Five devices of `session`'s with names, types, tags and statuses to filter on."""
    spec = [
        ("Greenhouse North 1", "esp32", ["greenhouse", "floor:1"], DeviceStatus.ONLINE),
        ("Greenhouse South", "esp32", ["greenhouse"], DeviceStatus.OFFLINE),
        ("lab-sensor_2", "rp2040", ["lab", "floor:1"], DeviceStatus.ONLINE),
        ("Basement pump", "esp8266", [], DeviceStatus.NEVER_SEEN),
        ("NORTHERN gate", "esp32", ["gate"], DeviceStatus.ONLINE),
    ]
    devices = {}
    for name, type, tags, status in spec:
        device = await create_device(api, session, name=name, type=type)
        if tags:
            await tag(api, session, device, *tags)
        await set_status(device, status)
        devices[name] = device
    return devices


# ------------------------------------------------------------------ each filter


async def test_find_devices_by_tag_exact(api: Api) -> None:
    session = await register(api)
    await fleet(api, session)
    assert await names(api, session, tag="greenhouse") == ["Greenhouse South", "Greenhouse North 1"]
    assert await names(api, session, tag="floor:1") == ["lab-sensor_2", "Greenhouse North 1"]
    assert await names(api, session, tag=" gate ") == ["NORTHERN gate"]  # trimmed like stored
    assert await names(api, session, tag="green") == []  # exact, no prefix
    assert await names(api, session, tag="Greenhouse") == []  # case kept


async def test_find_devices_by_type_and_status(api: Api) -> None:
    session = await register(api)
    await fleet(api, session)
    assert await names(api, session, type="esp32") == [
        "NORTHERN gate",
        "Greenhouse South",
        "Greenhouse North 1",
    ]
    assert await names(api, session, type="esp") == []
    assert await names(api, session, status="ONLINE") == [
        "NORTHERN gate",
        "lab-sensor_2",
        "Greenhouse North 1",
    ]
    assert await names(api, session, status="NEVER_SEEN") == ["Basement pump"]


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("green", ["Greenhouse South", "Greenhouse North 1"]),
        ("GREENHOUSE N", ["Greenhouse North 1"]),
        ("north", ["NORTHERN gate", "Greenhouse North 1"]),  # word prefix, any case
        ("north 1", ["Greenhouse North 1"]),
        ("sensor", ["lab-sensor_2"]),
        ("lab-s", ["lab-sensor_2"]),
        ("pump", ["Basement pump"]),
        ("house", []),  # inside a word: no
        ("orth", []),
        ("gate ", ["NORTHERN gate"]),  # trimmed
        (".*", []),  # regex characters are literal
    ],
)
async def test_find_devices_by_search_prefix_of_name_or_word(
    api: Api, search: str, expected: list[str]
) -> None:
    session = await register(api)
    await fleet(api, session)
    assert await names(api, session, search=search) == expected


async def test_find_devices_blank_search_matches_all(api: Api) -> None:
    session = await register(api)
    await fleet(api, session)
    assert len(await names(api, session, search="  ")) == 5


async def test_find_devices_filters_combine_with_and(api: Api) -> None:
    session = await register(api)
    await fleet(api, session)
    assert await names(api, session, tag="floor:1", status="ONLINE", type="esp32") == [
        "Greenhouse North 1"
    ]
    assert await names(api, session, search="north", type="esp32", status="ONLINE") == [
        "NORTHERN gate",
        "Greenhouse North 1",
    ]
    assert await names(api, session, search="green", status="ONLINE") == ["Greenhouse North 1"]
    assert await names(api, session, tag="lab", type="esp32") == []


async def test_find_devices_every_filter_null_lists_all(api: Api) -> None:
    session = await register(api)
    devices = await fleet(api, session)
    assert len(await names(api, session)) == len(devices)


async def test_find_devices_rename_moves_search(api: Api) -> None:
    session = await register(api)
    device = await create_device(api, session, name="Old name")
    result = await api.execute(
        op("UpdateDevice"), {"id": device.id, "name": "Fresh Start"}, token=session.access_token
    )
    assert result.data
    assert await names(api, session, search="old") == []
    assert await names(api, session, search="start") == ["Fresh Start"]


# ------------------------------------------------------------------ pagination


async def test_find_devices_pagination_walks_filtered_set_once(api: Api) -> None:
    session = await register(api)
    tagged = []
    for i in range(7):
        device = await create_device(api, session, name=f"unit {i}")
        if i % 3 != 0:  # 1, 2, 4, 5: tagged; 0, 3, 6: not
            await tag(api, session, device, "batch")
            tagged.append(device.id)
    seen: list[str] = []
    after: str | None = None
    for pages in itertools.count(1):
        result = await find(api, session, tag="batch", first=3, after=after)
        connection = result.data["devices"]
        assert connection["totalCount"] == 4
        seen += [edge["node"]["id"] for edge in connection["edges"]]
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
        assert pages < 5, "pagination does not terminate"
    assert pages == 2
    assert seen == list(reversed(tagged))  # newest first, each once


async def test_find_devices_malformed_cursor_bad_input(api: Api) -> None:
    session = await register(api)
    result = await find(api, session, tag="x", after="garbage")
    assert result.code == "BAD_USER_INPUT"
    assert result.message.startswith("after:")


# ------------------------------------------------------------------ tenancy


async def test_find_devices_never_returns_other_tenants_devices(api: Api) -> None:
    admin, user_a = await admin_and_user(api)
    user_b = await register(api)
    mine = await fleet(api, user_a)
    # B's device matches every filter A's devices match.
    theirs = await create_device(api, user_b, name="Greenhouse North 1", type="esp32")
    await tag(api, user_b, theirs, "greenhouse", "floor:1", "lab", "gate")
    await set_status(theirs, DeviceStatus.ONLINE)
    filters: list[dict[str, Any]] = [
        {},
        {"tag": "greenhouse"},
        {"tag": "lab"},
        {"type": "esp32"},
        {"type": "rp2040"},
        {"status": "ONLINE"},
        {"status": "NEVER_SEEN"},
        {"search": "green"},
        {"search": "basement"},
        {"search": "lab", "tag": "lab", "status": "ONLINE"},
    ]
    for variables in filters:
        result = await find(api, user_b, first=100, **variables)
        connection = result.data["devices"]
        ids = {edge["node"]["id"] for edge in connection["edges"]}
        assert ids <= {theirs.id}, variables
        assert connection["totalCount"] == len(ids), variables
        # A sees only its own under the same filter; the ADMIN sees both.
        own = await find(api, user_a, first=100, **variables)
        own_ids = {edge["node"]["id"] for edge in own.data["devices"]["edges"]}
        assert own_ids <= {d.id for d in mine.values()}, variables
        everyone = await find(api, admin, first=100, **variables)
        assert {edge["node"]["id"] for edge in everyone.data["devices"]["edges"]} == (
            ids | own_ids
        ), variables
    # The cursor of A's page gives B nothing of A's either.
    page = await find(api, user_a, first=1, tag="greenhouse")
    after = page.data["devices"]["pageInfo"]["endCursor"]
    rest = await find(api, user_b, first=100, tag="greenhouse", after=after)
    assert {e["node"]["id"] for e in rest.data["devices"]["edges"]} <= {theirs.id}


async def test_find_devices_without_token_unauthenticated(api: Api) -> None:
    result = await api.execute(op("FindDevices"), {"tag": "x"})
    assert result.code == "UNAUTHENTICATED"


# ------------------------------------------------------------------ organizationId, bad input


async def test_find_devices_organization_unknown_or_foreign_not_found(api: Api) -> None:
    _, session = await admin_and_user(api)
    other = await register(api)
    await create_device(api, session)
    await create_device(api, other)
    # No such organization, and another user's (personal) one, look the same.
    for organization_id in (str(ObjectId()), other.user_id):
        result = await find(api, session, organizationId=organization_id)
        assert result.code == "NOT_FOUND"
        assert result.message == "Organization not found."
    # Its own personal organization (its id is the user's): its devices.
    own = await find(api, session, organizationId=session.user_id)
    assert own.data["devices"]["totalCount"] == 1
    malformed = await find(api, session, organizationId="not-an-id")
    assert malformed.code == "BAD_USER_INPUT"
    assert malformed.message.startswith("filter.organizationId:")


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({"tag": "two words"}, "filter.tag"),
        ({"tag": "t" * 65}, "filter.tag"),
        ({"type": " "}, "filter.type"),
        ({"search": "s" * 101}, "filter.search"),
        ({"search": "bell\x07"}, "filter.search"),
    ],
)
async def test_find_devices_bad_filter_bad_input(
    api: Api, variables: dict[str, Any], field: str
) -> None:
    session = await register(api)
    result = await find(api, session, **variables)
    assert result.code == "BAD_USER_INPUT"
    assert result.message.startswith(f"{field}:"), result.message


@pytest.mark.parametrize("field", ["search", "type", "tag"])
async def test_find_devices_lone_surrogate_bad_input(api: Api, field: str) -> None:
    """JSON may escape half a UTF-16 pair ("\\ud800"); MongoDB cannot take it: refused,
    not INTERNAL."""
    session = await register(api)
    result = await api.execute_escaped(
        op("FindDevices"), {field: "x\ud800"}, token=session.access_token
    )
    assert result.code == "BAD_USER_INPUT"
    assert result.message.startswith(f"filter.{field}:"), result.message


async def test_create_device_lone_surrogate_name_bad_input(api: Api) -> None:
    """Names feed the search keys: one MongoDB cannot store is refused up front."""
    session = await register(api)
    result = await api.execute_escaped(
        op("CreateDevice"), {"name": "x\ud800", "type": "esp32"}, token=session.access_token
    )
    assert result.code == "BAD_USER_INPUT"
    assert result.message.startswith("name:")
    assert await Device.find_all().count() == 0


async def test_find_devices_unknown_status_bad_input(api: Api) -> None:
    session = await register(api)
    assert (await find(api, session, status="BROKEN")).code == "BAD_USER_INPUT"


# ------------------------------------------------------------------ devices stored before


async def insert_unkeyed(owner_id: str, *names: str) -> list[ObjectId]:
    """Devices as an older release stored them: no tags, attributes, location, keys."""
    ids = [ObjectId() for _ in names]
    await Device.get_pymongo_collection().insert_many(
        [
            {
                "_id": device_id,
                "owner_id": ObjectId(owner_id),
                "name": name,
                "type": "legacy",
                "status": "NEVER_SEEN",
                "metrics": [],
                "mqtt_username": str(device_id),
                "mqtt_password_hash": "-",
                "credentials_version": 1,
            }
            for device_id, name in zip(ids, names, strict=True)
        ]
    )
    return ids


async def test_backfill_search_keys_makes_old_devices_searchable_once(api: Api) -> None:
    session = await register(api)
    await insert_unkeyed(session.user_id, "Cellar Probe", "Attic probe")
    assert await names(api, session, search="probe") == []  # no keys: not found yet
    assert await names(api, session, type="legacy") == ["Attic probe", "Cellar Probe"]

    assert await backfill_search_keys() == 2
    assert await names(api, session, search="probe") == ["Attic probe", "Cellar Probe"]
    assert await names(api, session, search="cellar") == ["Cellar Probe"]
    assert await Marker.get(SEARCH_KEYS_MARKER) is not None
    # Done once: the marker makes later starts a single read.
    await insert_unkeyed(session.user_id, "Late probe")
    assert await backfill_search_keys() == 0


async def test_backfill_search_keys_leaves_renamed_devices_alone(api: Api) -> None:
    session = await register(api)
    device = await create_device(api, session, name="Current Name")
    await insert_unkeyed(session.user_id, "Old One")
    assert await backfill_search_keys() == 1
    document = await Device.get_pymongo_collection().find_one({"_id": ObjectId(device.id)})
    assert document is not None
    assert document["search_keys"] == ["current name", "name"]


async def test_api_start_backfills_search_keys(api: Api, settings: Settings) -> None:
    session = await register(api)
    await insert_unkeyed(session.user_id, "Boiler room")
    assert await Marker.get(SEARCH_KEYS_MARKER) is None
    async with serve_api(settings) as url, Api(url) as other:
        assert await names(other, session, search="boiler") == ["Boiler room"]
    assert await Marker.get(SEARCH_KEYS_MARKER) is not None


# ------------------------------------------------------------------ indexes


FILTER_INDEXES = {
    field: [("organization_id", 1), (field, 1), ("_id", -1)]
    for field in ("tags", "status", "type", "search_keys")
}


async def test_device_indexes_lead_with_organization_end_with_page_order() -> None:
    indexes = await Device.get_pymongo_collection().index_information()
    keys = [list(info["key"]) for info in indexes.values()]
    for field, expected in FILTER_INDEXES.items():
        assert expected in [[(k, int(d)) for k, d in key] for key in keys], field


@pytest.mark.parametrize(
    ("condition", "field"),
    [
        ({"tags": "greenhouse"}, "tags"),
        ({"status": "ONLINE"}, "status"),
        ({"type": "esp32"}, "type"),
        ({"search_keys": {"$regex": "^green"}}, "search_keys"),
    ],
)
async def test_find_devices_query_plan_fits_filter_index(
    api: Api, condition: dict[str, Any], field: str
) -> None:
    """On a real MongoDB (MONGODB_URL): the filter's index alone selects the page (every
    document fetched is returned: the key range is tight), and no plan scans the
    collection. The stand-in's explain has no query planner to ask."""
    session = await register(api)
    await fleet(api, session)
    query = {**condition, "organization_id": ObjectId(session.user_id)}
    collection = Device.get_pymongo_collection()
    plan = await collection.find(query).sort("_id", -1).limit(21).explain()
    if "queryPlanner" not in plan:
        pytest.skip("the MongoDB stand-in's explain() reports no query planner")
    assert "COLLSCAN" not in str(plan["queryPlanner"]["winningPlan"])
    index = f"organization_id_1_{field}_1__id_-1"
    hinted = await collection.find(query).sort("_id", -1).limit(21).hint(index).explain()
    stats = hinted["executionStats"]
    assert stats["nReturned"] >= 1
    assert stats["totalDocsExamined"] == stats["nReturned"]
