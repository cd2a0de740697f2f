"""DeviceLogs (keyset pages, newest first, from/to) and DeviceLogAdded (live, per device)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from beanie import PydanticObjectId
from redis.asyncio import Redis

from core.events import LogEvent, channels_for, device_channel
from models.device_logs import DeviceLog, LogLevel
from tests.client import Api
from tests.contract import op
from tests.factories import Session, admin_and_user, create_device, register
from tests.integration.graph.test_subscriptions import PROTOCOLS, client
from tests.integration.live import wait_numsub

# Recent: older lines than the retention (DEVICE_LOG_RETENTION_DAYS) expire at once.
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
LEVELS = list(LogLevel)


def iso(moment: datetime) -> str:
    return moment.isoformat()


def log_line(device_id: str, at: datetime, message: str, level: LogLevel = LogLevel.INFO) -> Any:
    return DeviceLog(
        id=PydanticObjectId(),  # increasing: the order that breaks timestamp ties
        device_id=PydanticObjectId(device_id),
        timestamp=at,
        level=level,
        message=message,
    )


async def user_with_device(api: Api) -> tuple[Session, str]:
    _, user = await admin_and_user(api)
    device = await create_device(api, user)
    return user, device.id


async def logs_page(api: Api, user: Session, **variables: Any) -> Any:
    result = await api.execute(op("DeviceLogs"), variables, token=user.access_token)
    return result.data["deviceLogs"]


def messages(page: Any) -> list[str]:
    return [edge["node"]["message"] for edge in page["edges"]]


# ---------------------------------------------------------------- deviceLogs


async def test_list_device_logs_pages_newest_first_each_once(api: Api) -> None:
    user, device_id = await user_with_device(api)
    series = [
        log_line(device_id, T0 + timedelta(seconds=i), f"m{i}", LEVELS[i % 5]) for i in range(12)
    ]
    # Two more at instants already taken: ties are ordered by _id.
    series += [
        log_line(device_id, T0 + timedelta(seconds=4), "tie4"),
        log_line(device_id, T0, "tie0"),
    ]
    await DeviceLog.insert_many(series)
    expected = [
        line.message for line in sorted(series, key=lambda x: (x.timestamp, x.id), reverse=True)
    ]
    seen: list[str] = []
    after = None
    while True:
        page = await logs_page(api, user, deviceId=device_id, first=5, after=after)
        seen += messages(page)
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == expected
    first = await logs_page(api, user, deviceId=device_id, first=1)
    assert first["edges"][0]["node"] == {
        "timestamp": iso(T0 + timedelta(seconds=11)),
        "level": LEVELS[11 % 5].value,
        "message": "m11",
    }


async def test_list_device_logs_from_inclusive_to_exclusive(api: Api) -> None:
    user, device_id = await user_with_device(api)
    await DeviceLog.insert_many(
        [log_line(device_id, T0 + timedelta(minutes=i), f"m{i}") for i in range(6)]
    )
    page = await logs_page(
        api,
        user,
        deviceId=device_id,
        **{"from": iso(T0 + timedelta(minutes=1)), "to": iso(T0 + timedelta(minutes=4))},
    )
    assert messages(page) == ["m3", "m2", "m1"]
    # Paging within the range keeps to it.
    page = await logs_page(
        api, user, deviceId=device_id, first=2, **{"from": iso(T0 + timedelta(minutes=2))}
    )
    assert messages(page) == ["m5", "m4"]
    rest = await logs_page(
        api,
        user,
        deviceId=device_id,
        after=page["pageInfo"]["endCursor"],
        **{"from": iso(T0 + timedelta(minutes=2))},
    )
    assert (messages(rest), rest["pageInfo"]["hasNextPage"]) == (["m3", "m2"], False)


async def test_list_device_logs_own_device_only(api: Api) -> None:
    user, device_id = await user_with_device(api)
    other_device = await create_device(api, user, name="other")
    await DeviceLog.insert_many(
        [log_line(device_id, T0, "mine"), log_line(other_device.id, T0, "not this one")]
    )
    assert messages(await logs_page(api, user, deviceId=device_id)) == ["mine"]


async def test_refuse_device_logs_foreign_device_not_found(api: Api) -> None:
    admin, user = await admin_and_user(api)
    device = await create_device(api, user)
    await DeviceLog.insert_many([log_line(device.id, T0, "private")])
    stranger = await register(api)
    result = await api.execute(
        op("DeviceLogs"), {"deviceId": device.id}, token=stranger.access_token
    )
    assert result.code == "NOT_FOUND"
    assert "private" not in str(result.body)
    # Not found and foreign look the same; an ADMIN sees everyone's.
    missing = await api.execute(
        op("DeviceLogs"), {"deviceId": str(PydanticObjectId())}, token=stranger.access_token
    )
    assert missing.code == "NOT_FOUND"
    assert messages(await logs_page(api, admin, deviceId=device.id)) == ["private"]


def reading_cursor() -> str:
    return base64.urlsafe_b64encode(
        f"r:{int(T0.timestamp() * 1000)}:{PydanticObjectId()}".encode()
    ).decode()


@pytest.mark.parametrize("cursor", ["not-a-cursor", "aWQ6NjU5ZjFjMmQ=", "readings"])
async def test_refuse_device_logs_malformed_cursor(api: Api, cursor: str) -> None:
    user, device_id = await user_with_device(api)
    after = reading_cursor() if cursor == "readings" else cursor  # not a log cursor
    result = await api.execute(
        op("DeviceLogs"), {"deviceId": device_id, "after": after}, token=user.access_token
    )
    assert result.code == "BAD_USER_INPUT"
    assert "after" in result.message


@pytest.mark.parametrize(
    ("variables", "field"),
    [({"first": -1}, "first"), ({"from": iso(T0), "to": iso(T0)}, "from")],  # an empty range
)
async def test_refuse_device_logs_bad_arguments(
    api: Api, variables: dict[str, Any], field: str
) -> None:
    user, device_id = await user_with_device(api)
    result = await api.execute(
        op("DeviceLogs"), {"deviceId": device_id, **variables}, token=user.access_token
    )
    assert result.code == "BAD_USER_INPUT"
    assert field in result.message


async def test_refuse_device_logs_unauthenticated(api: Api) -> None:
    _, device_id = await user_with_device(api)
    result = await api.execute(op("DeviceLogs"), {"deviceId": device_id})
    assert result.code == "UNAUTHENTICATED"


async def test_delete_device_deletes_its_logs(api: Api) -> None:
    user, device_id = await user_with_device(api)
    await DeviceLog.insert_many([log_line(device_id, T0, "bye")])
    result = await api.execute(op("DeleteDevice"), {"id": device_id}, token=user.access_token)
    assert result.data["deleteDevice"] is True
    assert await DeviceLog.find(DeviceLog.device_id == PydanticObjectId(device_id)).count() == 0


# ---------------------------------------------------------------- deviceLogAdded


def log_event(device_id: str, owner_id: str, message: str) -> LogEvent:
    return LogEvent(device_id, owner_id, T0, "WARNING", message)


async def publish(redis: Redis, event: LogEvent) -> None:
    """As the ingest worker does: the same payload on the event's three channels."""
    for channel in channels_for("logs", event.device_id, event.owner_id):
        await redis.publish(channel, event.encode())


def expected(message: str) -> dict[str, Any]:
    return {"deviceLogAdded": {"timestamp": iso(T0), "level": "WARNING", "message": message}}


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_receive_device_log_added_own_device_only(
    api: Api, api_server: str, redis: Redis, protocol: str
) -> None:
    _, user = await admin_and_user(api)
    device = await create_device(api, user)
    other = await create_device(api, user, name="other")
    async with client(api_server, user, protocol) as ws:
        await ws.subscribe("1", op("DeviceLogAdded"), {"deviceId": device.id})
        await wait_numsub(redis, device_channel("logs", device.id), 1)
        await publish(redis, log_event(other.id, user.user_id, "other device"))
        await publish(redis, log_event(device.id, user.user_id, "boot ok"))
        assert await ws.next_data() == expected("boot ok")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_refuse_device_log_added_foreign_device_not_found(
    api: Api, api_server: str, protocol: str
) -> None:
    _, a = await admin_and_user(api)
    b = await register(api)
    device_a = await create_device(api, a)
    async with client(api_server, b, protocol) as ws:
        await ws.subscribe("1", op("DeviceLogAdded"), {"deviceId": device_a.id})
        kind, op_id, payload = await ws.receive()
    assert (kind, op_id) == ("error", "1")
    errors = payload if isinstance(payload, list) else [payload]
    assert [error["extensions"]["code"] for error in errors] == ["NOT_FOUND"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_withhold_device_log_added_other_tenants_lines(
    api: Api, api_server: str, redis: Redis, protocol: str
) -> None:
    _, a = await admin_and_user(api)
    b = await register(api)
    device_a, device_b = await create_device(api, a), await create_device(api, b)
    channel = device_channel("logs", device_b.id)
    async with client(api_server, b, protocol) as ws:
        await ws.subscribe("1", op("DeviceLogAdded"), {"deviceId": device_b.id})
        await wait_numsub(redis, channel, 1)
        # On B's own channel, but A's line (misrouted) or naming another owner (stale).
        await redis.publish(channel, log_event(device_a.id, a.user_id, "A's secret").encode())
        await redis.publish(channel, log_event(device_b.id, a.user_id, "stale owner").encode())
        await redis.publish(channel, b"not json")
        await publish(redis, log_event(device_a.id, a.user_id, "A's own channel"))
        await publish(redis, log_event(device_b.id, b.user_id, "B's line"))
        # Published last: had any other been delivered it would have come first.
        assert await ws.next_data() == expected("B's line")


async def test_receive_device_log_added_admin_any_device(
    api: Api, api_server: str, redis: Redis
) -> None:
    admin, user = await admin_and_user(api)
    device = await create_device(api, user)
    async with client(api_server, admin) as ws:
        await ws.subscribe("1", op("DeviceLogAdded"), {"deviceId": device.id})
        await wait_numsub(redis, device_channel("logs", device.id), 1)
        await publish(redis, log_event(device.id, user.user_id, "seen by the admin"))
        assert await ws.next_data() == expected("seen by the admin")
