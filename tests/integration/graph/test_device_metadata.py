"""UpdateDeviceMetadata: tags, attributes and location, end to end against the real stack."""

from __future__ import annotations

from typing import Any

import pytest
from beanie import PydanticObjectId
from bson import ObjectId

from core.settings import Settings
from models.devices import Device
from tests.client import Api, Result
from tests.contract import op
from tests.factories import CreatedDevice, Session, admin_and_user, create_device, register

METADATA = "query ($id: ID!) { device(id: $id) { id name type tags attributes location { latitude longitude } } }"


async def update(api: Api, session: Session, device_id: str, **variables: Any) -> Result:
    return await api.execute(
        op("UpdateDeviceMetadata"), {"id": device_id, **variables}, token=session.access_token
    )


async def read(api: Api, session: Session, device_id: str) -> dict[str, Any]:
    result = await api.execute(METADATA, {"id": device_id}, token=session.access_token)
    return result.data["device"]  # type: ignore[no-any-return]


async def stored(device_id: str) -> Device:
    device = await Device.get(PydanticObjectId(device_id))
    assert device is not None
    return device


async def raw(device_id: str) -> dict[str, Any]:
    document = await Device.get_pymongo_collection().find_one({"_id": ObjectId(device_id)})
    assert document is not None
    return document


def assert_bad_input(result: Result, field: str) -> None:
    assert result.code == "BAD_USER_INPUT", result.errors
    assert result.message.startswith(f"{field}:"), result.message
    assert result.body.get("data") is None


FULL = {
    "tags": ["greenhouse", "floor:2"],
    "attributes": {"serial": "A-17", "rack": {"row": 3, "slots": [1, 2.5, None, True]}},
    "latitude": 52.52,
    "longitude": 13.405,
}


async def with_full_metadata(api: Api) -> tuple[Session, CreatedDevice]:
    session = await register(api)
    device = await create_device(api, session, name="Greenhouse 1")
    assert (await update(api, session, device.id, **FULL)).data
    return session, device


# ------------------------------------------------------------------ setting and reading


async def test_update_device_metadata_sets_tags_attributes_location(api: Api) -> None:
    session = await register(api)
    device = await create_device(api, session, name="Greenhouse 1", type="esp32")
    result = await update(api, session, device.id, **FULL)
    assert result.data["updateDevice"] == {
        "id": device.id,
        "tags": ["greenhouse", "floor:2"],
        "attributes": FULL["attributes"],
        "location": {"latitude": 52.52, "longitude": 13.405},
    }
    # Stored as such, and read back by the device query; name and type untouched.
    document = await raw(device.id)
    assert document["tags"] == ["greenhouse", "floor:2"]
    assert document["attributes"] == FULL["attributes"]
    assert list(document["attributes"]) == ["serial", "rack"]  # key order kept
    assert document["location"] == {"latitude": 52.52, "longitude": 13.405}
    assert await read(api, session, device.id) == {
        "id": device.id,
        "name": "Greenhouse 1",
        "type": "esp32",
        "tags": ["greenhouse", "floor:2"],
        "attributes": FULL["attributes"],
        "location": {"latitude": 52.52, "longitude": 13.405},
    }


async def test_create_device_metadata_empty(api: Api) -> None:
    session = await register(api)
    device = await create_device(api, session, name="Fresh")
    assert await read(api, session, device.id) == {
        "id": device.id,
        "name": "Fresh",
        "type": "esp32",
        "tags": [],
        "attributes": {},
        "location": None,
    }
    assert (await raw(device.id))["search_keys"] == ["fresh"]


async def test_update_device_metadata_tags_trimmed_deduplicated(api: Api) -> None:
    session = await register(api)
    device = await create_device(api, session)
    result = await update(api, session, device.id, tags=[" b ", "a", "b", "Site/Berlin"])
    assert result.data["updateDevice"]["tags"] == ["b", "a", "Site/Berlin"]
    assert (await stored(device.id)).tags == ["b", "a", "Site/Berlin"]


async def test_update_device_metadata_replaces_tags_and_attributes_whole(api: Api) -> None:
    session, device = await with_full_metadata(api)
    result = await update(api, session, device.id, tags=["other"], attributes={"only": 1})
    assert result.data["updateDevice"]["tags"] == ["other"]
    assert result.data["updateDevice"]["attributes"] == {"only": 1}


# ------------------------------------------------------------------ left out vs null


@pytest.mark.parametrize("field", ["tags", "attributes", "location"])
async def test_update_device_metadata_left_out_fields_unchanged(api: Api, field: str) -> None:
    session, device = await with_full_metadata(api)
    before = await read(api, session, device.id)
    changed = {
        "tags": {"tags": ["new"]},
        "attributes": {"attributes": {"new": True}},
        "location": {"latitude": -33.8688, "longitude": 151.2093},
    }[field]
    result = await update(api, session, device.id, **changed)
    after = await read(api, session, device.id)
    assert result.data["updateDevice"][field] == after[field] != before[field]
    for other in {"tags", "attributes", "location", "name", "type"} - {field}:
        assert after[other] == before[other], other


async def test_update_device_metadata_nothing_given_nothing_changed(api: Api) -> None:
    session, device = await with_full_metadata(api)
    before = (await stored(device.id)).model_dump()
    result = await update(api, session, device.id)
    assert result.data["updateDevice"]["tags"] == FULL["tags"]
    assert (await stored(device.id)).model_dump() == before


async def test_update_device_metadata_explicit_null_clears(api: Api) -> None:
    session, device = await with_full_metadata(api)
    result = await update(
        api, session, device.id, tags=None, attributes=None, latitude=None, longitude=None
    )
    assert result.data["updateDevice"] == {
        "id": device.id,
        "tags": [],
        "attributes": {},
        "location": None,
    }
    document = await stored(device.id)
    assert (document.tags, document.attributes, document.location) == ([], {}, None)
    assert document.name == "Greenhouse 1"


async def test_update_device_location_null_object_clears(api: Api) -> None:
    session, device = await with_full_metadata(api)
    query = "mutation ($id: ID!) { updateDevice(id: $id, input: {location: null}) { location { latitude } tags } }"
    result = await api.execute(query, {"id": device.id}, token=session.access_token)
    assert result.data["updateDevice"] == {"location": None, "tags": FULL["tags"]}
    assert (await stored(device.id)).location is None


async def test_update_device_empty_tags_list_clears(api: Api) -> None:
    session, device = await with_full_metadata(api)
    assert (await update(api, session, device.id, tags=[])).data["updateDevice"]["tags"] == []


async def test_update_device_contract_update_keeps_metadata(api: Api) -> None:
    session, device = await with_full_metadata(api)
    result = await api.execute(
        op("UpdateDevice"), {"id": device.id, "name": "Renamed"}, token=session.access_token
    )
    assert result.data["updateDevice"]["name"] == "Renamed"
    after = await read(api, session, device.id)
    assert (after["tags"], after["attributes"]) == (FULL["tags"], FULL["attributes"])
    assert after["location"] == {"latitude": 52.52, "longitude": 13.405}
    assert (await raw(device.id))["search_keys"] == ["renamed"]


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({"tags": [f"t{i}" for i in range(21)]}, "tags"),
        ({"tags": ["ok", "t" * 65]}, "tags[1]"),
        ({"tags": ["two words"]}, "tags[0]"),
        ({"tags": ["   "]}, "tags[0]"),
        ({"tags": ["a,b"]}, "tags[0]"),
        ({"attributes": [1, 2]}, "attributes"),
        ({"attributes": "text"}, "attributes"),
        ({"attributes": {"$set": {"owner_id": 1}}}, "attributes.$set"),
        ({"attributes": {"a.b": 1}}, "attributes.a.b"),
        ({"attributes": {"n": 2**63}}, "attributes.n"),
        ({"latitude": 90.5, "longitude": 0}, "location.latitude"),
        ({"latitude": 0, "longitude": -180.01}, "location.longitude"),
        ({"latitude": 10}, "location"),
        ({"longitude": 10}, "location"),
        ({"latitude": 10, "longitude": None}, "location"),
        # Good tags beside a bad location: nothing at all is applied.
        (
            {"tags": ["fine"], "attributes": {"k": 1}, "latitude": -91, "longitude": 0},
            "location.latitude",
        ),
    ],
)
async def test_update_device_metadata_bad_input_unchanged(
    api: Api, variables: dict[str, Any], field: str
) -> None:
    session, device = await with_full_metadata(api)
    before = (await stored(device.id)).model_dump()
    assert_bad_input(await update(api, session, device.id, **variables), field)
    assert (await stored(device.id)).model_dump() == before


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({"attributes": {"k": "x\ud800"}}, "attributes"),
        ({"attributes": {"\udc00": 1}}, "attributes"),
        ({"tags": ["x\ud800"]}, "tags[0]"),
    ],
)
async def test_update_device_metadata_lone_surrogate_bad_input(
    api: Api, variables: dict[str, Any], field: str
) -> None:
    """JSON may escape half a UTF-16 pair ("\\ud800"); MongoDB cannot store it: refused,
    not INTERNAL."""
    session, device = await with_full_metadata(api)
    before = (await stored(device.id)).model_dump()
    result = await api.execute_escaped(
        op("UpdateDeviceMetadata"), {"id": device.id, **variables}, token=session.access_token
    )
    assert_bad_input(result, field)
    assert (await stored(device.id)).model_dump() == before


async def test_update_device_attributes_size_limit_inclusive(api: Api, settings: Settings) -> None:
    session = await register(api)
    device = await create_device(api, session)
    limit = settings.device_attributes_max_bytes
    # {"k":"..."}: 8 bytes around the string; "é" is 2 bytes of UTF-8.
    at_limit = {"k": "x" * (limit - 8 - 2) + "é"}
    assert (await update(api, session, device.id, attributes=at_limit)).data
    assert (await stored(device.id)).attributes == at_limit
    over = {"k": "x" * (limit - 8 - 1) + "é"}
    result = await update(api, session, device.id, attributes=over)
    assert_bad_input(result, "attributes")
    assert f"at most {limit} bytes" in result.message
    assert (await stored(device.id)).attributes == at_limit


async def test_update_device_metadata_malformed_id_bad_input(api: Api) -> None:
    session = await register(api)
    assert_bad_input(await update(api, session, "not-an-id", tags=["x"]), "id")


async def test_update_device_metadata_without_token_unauthenticated(api: Api) -> None:
    session = await register(api)
    device = await create_device(api, session)
    result = await api.execute(op("UpdateDeviceMetadata"), {"id": device.id, "tags": ["anon"]})
    assert result.code == "UNAUTHENTICATED"
    assert (await stored(device.id)).tags == []


# ------------------------------------------------------------------ tenancy


async def test_update_device_metadata_other_users_not_found_unchanged(api: Api) -> None:
    _, owner = await admin_and_user(api)
    intruder = await register(api)
    device = await create_device(api, owner)
    await update(api, owner, device.id, **FULL)
    before = (await stored(device.id)).model_dump()
    attack = await update(
        api,
        intruder,
        device.id,
        tags=["pwned"],
        attributes={"owner": "me"},
        latitude=0,
        longitude=0,
    )
    assert attack.code == "NOT_FOUND"
    missing = await update(api, intruder, str(ObjectId()), tags=["x"])
    # Word for word what a nonexistent id gets.
    assert attack.message == missing.message == "Device not found."
    # Bad input on somebody else's device reveals nothing either.
    assert (await update(api, intruder, device.id, tags=["two words"])).code == "NOT_FOUND"
    assert (await stored(device.id)).model_dump() == before
    # Nor can the intruder read them.
    peek = await api.execute(METADATA, {"id": device.id}, token=intruder.access_token)
    assert peek.code == "NOT_FOUND"


async def test_update_device_metadata_admin_changes_any(api: Api) -> None:
    admin, user = await admin_and_user(api)
    device = await create_device(api, user)
    result = await update(api, admin, device.id, tags=["audited"], latitude=1, longitude=2)
    assert result.data["updateDevice"]["tags"] == ["audited"]
    assert (await read(api, user, device.id))["location"] == {"latitude": 1.0, "longitude": 2.0}


# ------------------------------------------------------------------ devices stored before


async def test_device_stored_before_metadata_reads_empty(api: Api) -> None:
    """A document written before these fields existed: no migration needed to read it."""
    session = await register(api)
    device = await create_device(api, session, name="Old timer")
    await Device.get_pymongo_collection().update_one(
        {"_id": ObjectId(device.id)},
        {"$unset": {"tags": "", "attributes": "", "location": "", "search_keys": ""}},
    )
    assert set(await raw(device.id)).isdisjoint({"tags", "attributes", "location"})
    assert (await read(api, session, device.id))["tags"] == []
    listing = await api.execute(op("Devices"), token=session.access_token)
    assert listing.data["devices"]["edges"][0]["node"]["id"] == device.id
    # And it takes metadata like any other.
    result = await update(api, session, device.id, tags=["legacy"], latitude=5, longitude=6)
    assert result.data["updateDevice"]["tags"] == ["legacy"]
    assert result.data["updateDevice"]["attributes"] == {}


# ------------------------------------------------------------------ the map widget


async def test_map_widget_devices_locations_readable(api: Api) -> None:
    """A map widget names devices; each one's location is what the client places."""
    session = await register(api)
    placed = await create_device(api, session, name="placed")
    unplaced = await create_device(api, session, name="unplaced")
    await update(api, session, placed.id, latitude=48.1374, longitude=11.5755)
    config = {
        "layout": {"columns": 12},
        "widgets": [
            {
                "id": "where",
                "kind": "map",
                "devices": [placed.id, unplaced.id],
                "position": {"x": 0, "y": 0, "w": 6, "h": 4},
            }
        ],
    }
    created = await api.execute(
        op("CreateDashboard"), {"name": "Sites", "config": config}, token=session.access_token
    )
    widget = created.data["createDashboard"]["config"]["widgets"][0]
    locations = {}
    for device_id in widget["devices"]:
        node = await read(api, session, device_id)
        locations[device_id] = node["location"]
    assert locations == {
        placed.id: {"latitude": 48.1374, "longitude": 11.5755},
        unplaced.id: None,
    }
