"""The contract's devices operations, end to end over HTTP against the real stack."""

from __future__ import annotations

import base64
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from beanie import PydanticObjectId
from bson import ObjectId
from pydantic import SecretStr

from core.settings import Settings
from ingest.store import insert_readings
from models.devices import Device
from models.readings import MetricValue, Reading
from services.credentials import verify_mqtt_password
from services.pagination import encode_cursor
from tests.client import Api, Result
from tests.commands import CommandCounter
from tests.contract import op
from tests.factories import CreatedDevice, Session, admin_and_user, create_device, register

# ------------------------------------------------------------------ helpers


async def stored(device_id: str) -> Device | None:
    return await Device.get(PydanticObjectId(device_id))


async def must_be_stored(device_id: str) -> Device:
    device = await stored(device_id)
    assert device is not None, f"device {device_id} is not stored"
    return device


async def add_reading(
    device_id: str, timestamp: datetime, value: float = 21.5, metric: str = "temperature"
) -> Reading:
    reading = Reading(
        id=PydanticObjectId(),
        device_id=PydanticObjectId(device_id),
        timestamp=timestamp,
        values=[MetricValue(metric=metric, value=value, unit="°C")],
    )
    # By the write path, which keeps the device's latest reading.
    await insert_readings([reading.model_dump(by_alias=True)], chunk_size=1)
    return reading


async def readings_of(device_id: str) -> int:
    return await Reading.find(Reading.device_id == PydanticObjectId(device_id)).count()


async def verify_token(api: Api, session: Session, token: str) -> dict[str, Any]:
    result = await api.execute(
        op("VerifyDeviceToken"), {"token": token}, token=session.access_token
    )
    return result.data["verifyDeviceToken"]  # type: ignore[no-any-return]


async def list_ids(api: Api, session: Session, **variables: Any) -> list[str]:
    result = await api.execute(op("Devices"), variables, token=session.access_token)
    return [edge["node"]["id"] for edge in result.data["devices"]["edges"]]


def device_jwt(
    settings: Settings,
    device_id: str,
    *,
    expires_in: timedelta,
    version: int,
    audience: str | None = None,
    issuer: str | None = None,
) -> str:
    """A device token made independently of services.tokens, with the app's secret."""
    now = datetime.now(UTC)
    claims = {
        "iss": issuer or settings.jwt_issuer,
        "aud": audience or settings.device_token_audience,
        "sub": device_id,
        "iat": now - timedelta(days=2),
        "exp": now + expires_in,
        "jti": uuid.uuid4().hex,
        "ver": version,
    }
    return jwt.encode(
        claims, settings.jwt_secret.get_secret_value(), algorithm=settings.jwt_algorithm
    )


def assert_bad_input(result: Result, field: str) -> None:
    assert result.code == "BAD_USER_INPUT", result.errors
    assert result.message.startswith(f"{field}:"), result.message


def iso(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def three_users(api: Api) -> tuple[Session, Session, Session]:
    """An ADMIN and two USERs, A and B."""
    admin, user_a = await admin_and_user(api)
    user_b = await register(api)
    assert user_b.role == "USER"
    return admin, user_a, user_b


MALFORMED_IDS = ["not-an-id", "123", "zzzzzzzzzzzzzzzzzzzzzzzz", "0" * 25, ""]


# ------------------------------------------------------------------ CreateDevice


async def test_create_device_returns_never_seen_device_and_credentials(api: Api) -> None:
    session = await register(api)
    before = datetime.now(UTC) - timedelta(seconds=5)
    result = await api.execute(
        op("CreateDevice"), {"name": "Greenhouse 1", "type": "esp32"}, token=session.access_token
    )
    payload = result.data["createDevice"]
    device, credentials = payload["device"], payload["credentials"]
    assert device["name"] == "Greenhouse 1"
    assert device["type"] == "esp32"
    assert device["status"] == "NEVER_SEEN"
    assert device["lastSeen"] is None
    assert device["firmwareVersion"] is None
    assert before <= iso(device["createdAt"]) <= datetime.now(UTC) + timedelta(seconds=5)
    assert ObjectId.is_valid(device["id"])
    assert credentials["mqttUsername"]
    assert len(credentials["mqttPassword"]) >= 32
    assert credentials["token"].count(".") == 2  # a JWT

    document = await must_be_stored(device["id"])
    assert str(document.owner_id) == session.user_id
    assert document.mqtt_username == credentials["mqttUsername"]
    # The token is a working device token for this very device.
    check = await verify_token(api, session, credentials["token"])
    assert check["valid"] is True
    assert check["deviceId"] == device["id"]


async def test_create_device_stores_only_password_hash(api: Api) -> None:
    session = await register(api)
    created = await create_device(api, session)
    document = await must_be_stored(created.id)
    assert created.mqtt_password not in document.model_dump_json()
    raw = await Device.get_pymongo_collection().find_one({"_id": ObjectId(created.id)})
    assert raw is not None
    assert created.mqtt_password not in repr(raw)
    assert created.token not in repr(raw)
    assert document.mqtt_password_hash.startswith("$7$")
    assert verify_mqtt_password(created.mqtt_password, document.mqtt_password_hash)
    assert not verify_mqtt_password(created.mqtt_password + "x", document.mqtt_password_hash)


async def test_create_device_credentials_not_readable_afterwards(api: Api) -> None:
    session = await register(api)
    created = await create_device(api, session)
    query = "query ($id: ID!) { device(id: $id) { id credentials { mqttPassword } } }"
    result = await api.execute(query, {"id": created.id}, token=session.access_token)
    assert result.code == "BAD_USER_INPUT"
    assert "credentials" in result.message
    assert created.mqtt_password not in str(result.body)
    # And the contract's Device query returns nothing secret either.
    device = await api.execute(op("Device"), {"id": created.id}, token=session.access_token)
    assert created.mqtt_password not in str(device.body)
    assert created.token not in str(device.body)


async def test_create_device_name_trimmed_and_limits_inclusive(api: Api) -> None:
    session = await register(api)
    trimmed = await create_device(api, session, name="  lab sensor \t", type=" esp32 ")
    assert (trimmed.node["name"], trimmed.node["type"]) == ("lab sensor", "esp32")
    longest = await create_device(api, session, name="n" * 100, type="t" * 64)
    assert (longest.node["name"], longest.node["type"]) == ("n" * 100, "t" * 64)
    assert await Device.find_all().count() == 2


@pytest.mark.parametrize(
    ("name", "type", "field"),
    [
        ("", "esp32", "name"),
        ("   ", "esp32", "name"),
        ("n" * 101, "esp32", "name"),
        ("sensor", "", "type"),
        ("sensor", " \t ", "type"),
        ("sensor", "t" * 65, "type"),
        ("bad\x00name", "esp32", "name"),
        ("line\nbreak", "esp32", "name"),
        ("zero\u200bwidth", "esp32", "name"),
        ("sensor", "esp\x1b[31m32", "type"),
    ],
)
async def test_create_device_bad_input_rejected(api: Api, name: str, type: str, field: str) -> None:
    session = await register(api)
    result = await api.execute(
        op("CreateDevice"), {"name": name, "type": type}, token=session.access_token
    )
    assert_bad_input(result, field)
    assert result.body.get("data") is None
    assert await Device.find_all().count() == 0


async def test_create_device_without_token_unauthenticated(api: Api) -> None:
    result = await api.execute(op("CreateDevice"), {"name": "sensor", "type": "esp32"})
    assert result.code == "UNAUTHENTICATED"
    bad = await api.execute(op("CreateDevice"), {"name": "sensor", "type": "esp32"}, token="junk")
    assert bad.code == "UNAUTHENTICATED"
    assert await Device.find_all().count() == 0


# ------------------------------------------------------------------ Devices


async def test_list_devices_newest_first_with_total_count(api: Api) -> None:
    session = await register(api)
    created = [await create_device(api, session, name=f"d{i}") for i in range(4)]
    result = await api.execute(op("Devices"), token=session.access_token)
    devices = result.data["devices"]
    assert [edge["node"]["id"] for edge in devices["edges"]] == [d.id for d in reversed(created)]
    assert [edge["node"]["name"] for edge in devices["edges"]] == ["d3", "d2", "d1", "d0"]
    assert devices["totalCount"] == 4
    assert devices["pageInfo"]["hasNextPage"] is False
    assert devices["pageInfo"]["endCursor"] == devices["edges"][-1]["cursor"]
    node = devices["edges"][0]["node"]
    assert (node["status"], node["lastSeen"], node["firmwareVersion"]) == ("NEVER_SEEN", None, None)


async def test_list_devices_pagination_walks_every_device_once(api: Api) -> None:
    session = await register(api)
    created = [await create_device(api, session, name=f"d{i}") for i in range(5)]
    seen: list[str] = []
    pages = 0
    after: str | None = None
    while True:
        result = await api.execute(
            op("Devices"), {"first": 2, "after": after}, token=session.access_token
        )
        connection = result.data["devices"]
        pages += 1
        assert connection["totalCount"] == 5
        assert len(connection["edges"]) <= 2
        seen += [edge["node"]["id"] for edge in connection["edges"]]
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
        assert pages < 10, "pagination does not terminate"
    assert pages == 3
    assert seen == [d.id for d in reversed(created)]


async def test_list_devices_user_sees_only_own(api: Api) -> None:
    admin, user_a, user_b = await three_users(api)
    own = {(await create_device(api, user_a, name=f"a{i}")).id for i in range(2)}
    await create_device(api, user_b, name="b0")
    await create_device(api, admin, name="admin0")
    result = await api.execute(op("Devices"), token=user_a.access_token)
    assert {edge["node"]["id"] for edge in result.data["devices"]["edges"]} == own
    assert result.data["devices"]["totalCount"] == 2


async def test_list_devices_admin_sees_all_users(api: Api) -> None:
    admin, user_a, user_b = await three_users(api)
    every = {
        (await create_device(api, user_a)).id,
        (await create_device(api, user_b)).id,
        (await create_device(api, admin)).id,
    }
    result = await api.execute(op("Devices"), token=admin.access_token)
    assert {edge["node"]["id"] for edge in result.data["devices"]["edges"]} == every
    assert result.data["devices"]["totalCount"] == 3


async def test_list_devices_latest_reading_null_then_newest(api: Api) -> None:
    session = await register(api)
    quiet = await create_device(api, session, name="quiet")
    busy = await create_device(api, session, name="busy")
    base = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    # Inserted out of order: "latest" must mean the newest timestamp, not the last insert.
    await add_reading(busy.id, base + timedelta(minutes=5), value=25.0)
    await add_reading(busy.id, base + timedelta(minutes=10), value=30.25)
    await add_reading(busy.id, base, value=20.0)
    result = await api.execute(op("Devices"), token=session.access_token)
    nodes = {edge["node"]["id"]: edge["node"] for edge in result.data["devices"]["edges"]}
    assert nodes[quiet.id]["latestReading"] is None
    latest = nodes[busy.id]["latestReading"]
    assert latest is not None
    assert iso(latest["timestamp"]) == base + timedelta(minutes=10)
    assert latest["values"] == [{"metric": "temperature", "value": 30.25, "unit": "°C"}]


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        "%%%",
        base64.urlsafe_b64encode(b"hello").decode(),
        base64.urlsafe_b64encode(b"id:not-an-object-id").decode(),
        str(ObjectId()),
    ],
)
async def test_list_devices_malformed_cursor_bad_input(api: Api, cursor: str) -> None:
    session = await register(api)
    await create_device(api, session)
    result = await api.execute(op("Devices"), {"after": cursor}, token=session.access_token)
    assert_bad_input(result, "after")


async def test_list_devices_cursor_of_encode_cursor_accepted(api: Api) -> None:
    # Sanity for the malformed-cursor cases: a well-made cursor is taken.
    session = await register(api)
    older = await create_device(api, session)
    newer = await create_device(api, session)
    after = encode_cursor(ObjectId(newer.id))
    assert await list_ids(api, session, after=after) == [older.id]


async def test_list_devices_negative_first_bad_input(api: Api) -> None:
    session = await register(api)
    result = await api.execute(op("Devices"), {"first": -1}, token=session.access_token)
    assert_bad_input(result, "first")


async def test_list_devices_huge_first_capped(api: Api, settings: Settings) -> None:
    session = await register(api)
    owner = PydanticObjectId(session.user_id)
    total = settings.page_size_max + 1
    ids = [PydanticObjectId() for _ in range(total)]
    await Device.insert_many(
        [
            Device(
                id=device_id,
                owner_id=owner,
                name=f"bulk{i}",
                type="esp32",
                mqtt_username=str(device_id),
                mqtt_password_hash="$7$1$AAAA$AAAA",
            )
            for i, device_id in enumerate(ids)
        ]
    )
    result = await api.execute(op("Devices"), {"first": 1_000_000}, token=session.access_token)
    connection = result.data["devices"]
    assert len(connection["edges"]) == settings.page_size_max
    assert connection["pageInfo"]["hasNextPage"] is True
    assert connection["totalCount"] == total
    rest = await list_ids(api, session, first=1_000_000, after=connection["pageInfo"]["endCursor"])
    assert rest == [str(ids[0])]


async def test_list_devices_without_token_unauthenticated(api: Api) -> None:
    assert (await api.execute(op("Devices"))).code == "UNAUTHENTICATED"
    assert (await api.execute(op("Devices"), token="not.a.jwt")).code == "UNAUTHENTICATED"


# ------------------------------------------------------------------ DataLoader round trips


DEVICES_WITH_OWNERS = """
query DevicesWithOwners {
  devices(first: 50) {
    edges { node { id latestReading { timestamp values { metric value } } owner { id email } } }
    totalCount
  }
}
"""


async def test_list_devices_dataloaders_constant_round_trips(
    api: Api, command_counter: CommandCounter
) -> None:
    admin, user = await admin_and_user(api)
    owners = {admin.user_id: admin.email, user.user_id: user.email}
    created: list[CreatedDevice] = []
    stamp = datetime(2025, 5, 1, tzinfo=UTC)

    async def grow_to(count: int) -> None:
        while len(created) < count:
            owner = (admin, user)[len(created) % 2]
            device = await create_device(api, owner, name=f"d{len(created)}")
            await add_reading(device.id, stamp + timedelta(seconds=len(created)))
            created.append(device)

    async def measure() -> Counter[str]:
        command_counter.commands.clear()
        command_counter.recording = True
        try:
            result = await api.execute(DEVICES_WITH_OWNERS, token=admin.access_token)
        finally:
            command_counter.recording = False
        edges = result.data["devices"]["edges"]
        assert len(edges) == len(created)
        for edge in edges:
            node = edge["node"]
            assert node["latestReading"] is not None
            assert owners[node["owner"]["id"]] == node["owner"]["email"]
        return Counter(command_counter.commands)

    await grow_to(3)
    small = await measure()
    await grow_to(12)
    large = await measure()

    # Reads are the caller, one page of devices, its count, one batch of latest
    # readings and one batch of owners: the same commands for 3 devices as for 12.
    assert large == small, (small, large)
    reads = large["find"] + large["aggregate"]
    assert reads <= 6, large
    assert reads < len(created)


# ------------------------------------------------------------------ Device


async def test_get_device_with_owner_and_metrics(api: Api) -> None:
    session = await register(api)
    created = await create_device(api, session, name="kitchen", type="rpi")
    document = await must_be_stored(created.id)
    await document.set({"metrics": ["temperature", "humidity", "co2.ppm"]})
    result = await api.execute(op("Device"), {"id": created.id}, token=session.access_token)
    device = result.data["device"]
    assert device["id"] == created.id
    assert (device["name"], device["type"], device["status"]) == ("kitchen", "rpi", "NEVER_SEEN")
    assert device["createdAt"] == created.node["createdAt"]
    assert device["owner"] == {"id": session.user_id, "email": session.email}
    assert device["metrics"] == ["co2.ppm", "humidity", "temperature"]


async def test_get_device_other_users_not_found_like_missing(api: Api) -> None:
    _, user_a, user_b = await three_users(api)
    device = await create_device(api, user_a)
    foreign = await api.execute(op("Device"), {"id": device.id}, token=user_b.access_token)
    missing = await api.execute(op("Device"), {"id": str(ObjectId())}, token=user_b.access_token)
    assert foreign.code == missing.code == "NOT_FOUND"
    assert foreign.message == missing.message
    assert foreign.body.get("data") == missing.body.get("data")
    assert device.id not in str(foreign.body)


@pytest.mark.parametrize("bad_id", MALFORMED_IDS)
async def test_get_device_malformed_id_bad_input(api: Api, bad_id: str) -> None:
    session = await register(api)
    result = await api.execute(op("Device"), {"id": bad_id}, token=session.access_token)
    assert_bad_input(result, "id")


async def test_get_device_admin_reads_any(api: Api) -> None:
    admin, user = await admin_and_user(api)
    device = await create_device(api, user, name="users-own")
    result = await api.execute(op("Device"), {"id": device.id}, token=admin.access_token)
    assert result.data["device"]["name"] == "users-own"
    assert result.data["device"]["owner"] == {"id": user.user_id, "email": user.email}


async def test_get_device_without_token_unauthenticated(api: Api) -> None:
    session = await register(api)
    device = await create_device(api, session)
    assert (await api.execute(op("Device"), {"id": device.id})).code == "UNAUTHENTICATED"


# ------------------------------------------------------------------ UpdateDevice


async def test_update_device_renames_and_retypes(api: Api) -> None:
    session = await register(api)
    device = await create_device(api, session, name="old", type="esp8266")
    result = await api.execute(
        op("UpdateDevice"),
        {"id": device.id, "name": " new name ", "type": "esp32-s3"},
        token=session.access_token,
    )
    assert result.data["updateDevice"] == {"id": device.id, "name": "new name", "type": "esp32-s3"}
    document = await must_be_stored(device.id)
    assert (document.name, document.type) == ("new name", "esp32-s3")


async def test_update_device_partial_leaves_other_field(api: Api) -> None:
    session = await register(api)
    device = await create_device(api, session, name="old", type="esp8266")
    renamed = await api.execute(
        op("UpdateDevice"), {"id": device.id, "name": "renamed"}, token=session.access_token
    )
    assert renamed.data["updateDevice"]["type"] == "esp8266"
    retyped = await api.execute(
        op("UpdateDevice"), {"id": device.id, "type": "rp2040"}, token=session.access_token
    )
    assert retyped.data["updateDevice"]["name"] == "renamed"
    document = await must_be_stored(device.id)
    assert (document.name, document.type) == ("renamed", "rp2040")


async def test_update_device_other_users_not_found_unchanged(api: Api) -> None:
    _, user_a, user_b = await three_users(api)
    device = await create_device(api, user_a, name="mine", type="esp32")
    result = await api.execute(
        op("UpdateDevice"),
        {"id": device.id, "name": "stolen", "type": "evil"},
        token=user_b.access_token,
    )
    assert result.code == "NOT_FOUND"
    missing = await api.execute(
        op("UpdateDevice"), {"id": str(ObjectId()), "name": "x"}, token=user_b.access_token
    )
    assert missing.message == result.message
    document = await must_be_stored(device.id)
    assert (document.name, document.type) == ("mine", "esp32")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "  "}, "name"),
        ({"name": "n" * 101}, "name"),
        ({"name": "bell\x07"}, "name"),
        ({"type": "t" * 65}, "type"),
        ({"type": "tab\tinside"}, "type"),
        # A valid name beside a bad type: nothing at all is applied.
        ({"name": "fine", "type": ""}, "type"),
    ],
)
async def test_update_device_bad_input_unchanged(
    api: Api, changes: dict[str, str], field: str
) -> None:
    session = await register(api)
    device = await create_device(api, session, name="orig", type="esp32")
    result = await api.execute(
        op("UpdateDevice"), {"id": device.id, **changes}, token=session.access_token
    )
    assert_bad_input(result, field)
    document = await must_be_stored(device.id)
    assert (document.name, document.type) == ("orig", "esp32")


@pytest.mark.parametrize("bad_id", MALFORMED_IDS[:3])
async def test_update_device_malformed_id_bad_input(api: Api, bad_id: str) -> None:
    session = await register(api)
    result = await api.execute(
        op("UpdateDevice"), {"id": bad_id, "name": "x"}, token=session.access_token
    )
    assert_bad_input(result, "id")


async def test_update_device_without_token_unauthenticated(api: Api) -> None:
    session = await register(api)
    device = await create_device(api, session, name="orig")
    result = await api.execute(op("UpdateDevice"), {"id": device.id, "name": "anon"})
    assert result.code == "UNAUTHENTICATED"
    assert (await must_be_stored(device.id)).name == "orig"


# ------------------------------------------------------------------ DeleteDevice


async def test_delete_device_removes_device_and_its_readings(api: Api) -> None:
    session = await register(api)
    doomed = await create_device(api, session, name="doomed")
    kept = await create_device(api, session, name="kept")
    base = datetime(2025, 4, 1, tzinfo=UTC)
    await add_reading(doomed.id, base)
    await add_reading(doomed.id, base + timedelta(minutes=1))
    await add_reading(kept.id, base)
    assert await readings_of(doomed.id) == 2

    result = await api.execute(op("DeleteDevice"), {"id": doomed.id}, token=session.access_token)
    assert result.data["deleteDevice"] is True

    assert await stored(doomed.id) is None
    assert await readings_of(doomed.id) == 0
    assert await readings_of(kept.id) == 1
    assert await list_ids(api, session) == [kept.id]
    gone = await api.execute(op("Device"), {"id": doomed.id}, token=session.access_token)
    assert gone.code == "NOT_FOUND"
    again = await api.execute(op("DeleteDevice"), {"id": doomed.id}, token=session.access_token)
    assert again.code == "NOT_FOUND"


async def test_delete_device_token_no_longer_valid(api: Api) -> None:
    session = await register(api)
    device = await create_device(api, session)
    assert (await verify_token(api, session, device.token))["valid"] is True
    result = await api.execute(op("DeleteDevice"), {"id": device.id}, token=session.access_token)
    assert result.data["deleteDevice"] is True
    check = await verify_token(api, session, device.token)
    assert check == {"valid": False, "deviceId": None, "expiresAt": None}


async def test_delete_device_other_users_not_found_still_there(api: Api) -> None:
    _, user_a, user_b = await three_users(api)
    device = await create_device(api, user_a)
    await add_reading(device.id, datetime(2025, 4, 1, tzinfo=UTC))
    result = await api.execute(op("DeleteDevice"), {"id": device.id}, token=user_b.access_token)
    assert result.code == "NOT_FOUND"
    assert await stored(device.id) is not None
    assert await readings_of(device.id) == 1
    assert await list_ids(api, user_a) == [device.id]


@pytest.mark.parametrize("bad_id", MALFORMED_IDS[:3])
async def test_delete_device_malformed_id_bad_input(api: Api, bad_id: str) -> None:
    session = await register(api)
    result = await api.execute(op("DeleteDevice"), {"id": bad_id}, token=session.access_token)
    assert_bad_input(result, "id")


async def test_delete_device_without_token_unauthenticated(api: Api) -> None:
    session = await register(api)
    device = await create_device(api, session)
    assert (await api.execute(op("DeleteDevice"), {"id": device.id})).code == "UNAUTHENTICATED"
    assert await stored(device.id) is not None


# ------------------------------------------------------------------ RotateDeviceCredentials


async def test_rotate_device_credentials_replaces_password_and_token(
    api: Api, settings: Settings
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    old_hash = (await must_be_stored(device.id)).mqtt_password_hash

    result = await api.execute(
        op("RotateDeviceCredentials"), {"id": device.id}, token=session.access_token
    )
    rotated = result.data["rotateDeviceCredentials"]
    assert rotated["mqttUsername"] == device.mqtt_username
    assert rotated["mqttPassword"] != device.mqtt_password
    assert rotated["token"] != device.token

    document = await must_be_stored(device.id)
    assert document.mqtt_password_hash != old_hash
    assert not verify_mqtt_password(device.mqtt_password, document.mqtt_password_hash)
    assert verify_mqtt_password(rotated["mqttPassword"], document.mqtt_password_hash)
    assert rotated["mqttPassword"] not in document.model_dump_json()

    old = await verify_token(api, session, device.token)
    assert old["valid"] is False
    new = await verify_token(api, session, rotated["token"])
    assert new["valid"] is True
    assert new["deviceId"] == device.id
    expected = datetime.now(UTC) + timedelta(seconds=settings.device_token_ttl_seconds)
    assert abs(iso(new["expiresAt"]) - expected) < timedelta(minutes=1)


async def test_rotate_device_credentials_twice_only_latest_valid(api: Api) -> None:
    session = await register(api)
    device = await create_device(api, session)
    tokens = [device.token]
    for _ in range(2):
        result = await api.execute(
            op("RotateDeviceCredentials"), {"id": device.id}, token=session.access_token
        )
        tokens.append(result.data["rotateDeviceCredentials"]["token"])
    checks = [(await verify_token(api, session, token))["valid"] for token in tokens]
    assert checks == [False, False, True]


async def test_rotate_device_credentials_other_users_not_found_unchanged(api: Api) -> None:
    _, user_a, user_b = await three_users(api)
    device = await create_device(api, user_a)
    before = await must_be_stored(device.id)
    result = await api.execute(
        op("RotateDeviceCredentials"), {"id": device.id}, token=user_b.access_token
    )
    assert result.code == "NOT_FOUND"
    assert device.mqtt_password not in str(result.body)
    after = await must_be_stored(device.id)
    assert after.mqtt_password_hash == before.mqtt_password_hash
    assert after.credentials_version == before.credentials_version
    assert verify_mqtt_password(device.mqtt_password, after.mqtt_password_hash)
    assert (await verify_token(api, user_a, device.token))["valid"] is True


@pytest.mark.parametrize("bad_id", MALFORMED_IDS[:3])
async def test_rotate_device_credentials_malformed_id_bad_input(api: Api, bad_id: str) -> None:
    session = await register(api)
    result = await api.execute(
        op("RotateDeviceCredentials"), {"id": bad_id}, token=session.access_token
    )
    assert_bad_input(result, "id")


async def test_rotate_device_credentials_without_token_unauthenticated(api: Api) -> None:
    session = await register(api)
    device = await create_device(api, session)
    before = await must_be_stored(device.id)
    result = await api.execute(op("RotateDeviceCredentials"), {"id": device.id})
    assert result.code == "UNAUTHENTICATED"
    after = await must_be_stored(device.id)
    assert after.mqtt_password_hash == before.mqtt_password_hash


# ------------------------------------------------------------------ VerifyDeviceToken


async def test_verify_device_token_valid(api: Api, settings: Settings) -> None:
    session = await register(api)
    device = await create_device(api, session)
    check = await verify_token(api, session, device.token)
    assert check["valid"] is True
    assert check["deviceId"] == device.id
    expires_at = iso(check["expiresAt"])
    assert expires_at > datetime.now(UTC)
    expected = datetime.now(UTC) + timedelta(seconds=settings.device_token_ttl_seconds)
    assert abs(expires_at - expected) < timedelta(minutes=1)


async def test_verify_device_token_any_user_may_check(api: Api) -> None:
    # "A device token presented by anyone (e.g. a gateway)": not only the owner.
    _, user_a, user_b = await three_users(api)
    device = await create_device(api, user_a)
    check = await verify_token(api, user_b, device.token)
    assert check["valid"] is True
    assert check["deviceId"] == device.id


@pytest.mark.parametrize(
    "garbage", ["garbage", "", "a.b.c", "Bearer x", "eyJhbGciOiJub25lIn0.e30."]
)
async def test_verify_device_token_garbage_invalid(api: Api, garbage: str) -> None:
    session = await register(api)
    result = await api.execute(
        op("VerifyDeviceToken"), {"token": garbage}, token=session.access_token
    )
    assert result.errors == []
    assert result.data["verifyDeviceToken"] == {"valid": False, "deviceId": None, "expiresAt": None}


async def test_verify_device_token_expired_invalid(api: Api, settings: Settings) -> None:
    session = await register(api)
    device = await create_device(api, session)
    # Control: the hand-made token is accepted while it is current ...
    current = device_jwt(settings, device.id, expires_in=timedelta(hours=1), version=1)
    assert (await verify_token(api, session, current))["valid"] is True
    # ... and refused once expired.
    expired = device_jwt(settings, device.id, expires_in=-timedelta(hours=1), version=1)
    check = await verify_token(api, session, expired)
    assert check == {"valid": False, "deviceId": None, "expiresAt": None}


async def test_verify_device_token_other_secret_invalid(api: Api, settings: Settings) -> None:
    session = await register(api)
    device = await create_device(api, session)
    forged_settings = settings.model_copy(update={"jwt_secret": SecretStr("x" * 48)})
    forged = device_jwt(forged_settings, device.id, expires_in=timedelta(hours=1), version=1)
    assert (await verify_token(api, session, forged))["valid"] is False


async def test_verify_device_token_wrong_audience_or_issuer_invalid(
    api: Api, settings: Settings
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    hour = timedelta(hours=1)
    # Every device claim present and current; only the audience or issuer is wrong.
    api_audience = device_jwt(
        settings, device.id, expires_in=hour, version=1, audience=settings.jwt_audience
    )
    other_issuer = device_jwt(settings, device.id, expires_in=hour, version=1, issuer="elsewhere")
    for token in (api_audience, other_issuer):
        assert (await verify_token(api, session, token))["valid"] is False


async def test_verify_device_token_stale_version_invalid(api: Api, settings: Settings) -> None:
    session = await register(api)
    device = await create_device(api, session)
    hour = timedelta(hours=1)
    assert (
        await verify_token(
            api, session, device_jwt(settings, device.id, expires_in=hour, version=1)
        )
    )["valid"] is True
    for version in (0, 2):
        token = device_jwt(settings, device.id, expires_in=hour, version=version)
        assert (await verify_token(api, session, token))["valid"] is False


async def test_verify_device_token_access_token_invalid(api: Api) -> None:
    session = await register(api)
    await create_device(api, session)
    check = await verify_token(api, session, session.access_token)
    assert check == {"valid": False, "deviceId": None, "expiresAt": None}


async def test_use_device_token_as_user_token_unauthenticated(api: Api) -> None:
    # verifyDeviceToken needs no user token (tests/integration/security/test_device_token.py), but a
    # device token is no user credential.
    session = await register(api)
    device = await create_device(api, session)
    as_bearer = await api.execute(op("Me"), token=device.token)
    assert as_bearer.code == "UNAUTHENTICATED"


# ------------------------------------------------------------------ tenancy summary


async def test_cross_tenant_user_cannot_touch_other_users_devices(api: Api) -> None:
    _, user_a, user_b = await three_users(api)
    mine = [await create_device(api, user_a, name=f"a{i}", type="esp32") for i in range(2)]
    theirs = await create_device(api, user_b, name="b0")
    before = {d.id: await must_be_stored(d.id) for d in mine}

    listing = await api.execute(op("Devices"), {"first": 100}, token=user_b.access_token)
    assert [e["node"]["id"] for e in listing.data["devices"]["edges"]] == [theirs.id]
    assert listing.data["devices"]["totalCount"] == 1

    b = user_b.access_token
    missing = await api.execute(op("Device"), {"id": str(ObjectId())}, token=b)
    assert missing.code == "NOT_FOUND"
    for device in mine:
        variables = {"id": device.id}
        attempts = {
            "Device": await api.execute(op("Device"), variables, token=b),
            "UpdateDevice": await api.execute(
                op("UpdateDevice"), {**variables, "name": "pwned"}, token=b
            ),
            "RotateDeviceCredentials": await api.execute(
                op("RotateDeviceCredentials"), variables, token=b
            ),
            "DeleteDevice": await api.execute(op("DeleteDevice"), variables, token=b),
        }
        assert {name: r.code for name, r in attempts.items()} == dict.fromkeys(
            attempts, "NOT_FOUND"
        )
        # Word for word what a nonexistent id gets: nothing tells "exists" from "missing".
        assert {r.message for r in attempts.values()} == {missing.message}

    for device in mine:
        after = await must_be_stored(device.id)
        assert after.model_dump() == before[device.id].model_dump()
        assert (await verify_token(api, user_a, device.token))["valid"] is True
    assert sorted(await list_ids(api, user_a)) == sorted(d.id for d in mine)
