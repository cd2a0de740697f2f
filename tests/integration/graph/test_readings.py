"""Readings (cursor pages, newest first) and Aggregate (per-bucket statistics in MongoDB)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from beanie import PydanticObjectId

from ingest import rollups
from ingest.store import insert_readings
from models.readings import MetricValue, Reading
from tests.client import Api
from tests.contract import op
from tests.factories import Session, admin_and_user, create_device, register

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat()


async def insert(readings: list[Reading]) -> None:
    # By the write path (rollups follow); the MongoDB stand-in is slow: small chunks.
    documents = [r.model_dump(by_alias=True) for r in readings]
    await insert_readings(documents, chunk_size=100)


def reading(device_id: str, at: datetime, **values: float) -> Reading:
    return Reading(
        id=PydanticObjectId(),  # increasing: the order that breaks timestamp ties
        device_id=PydanticObjectId(device_id),
        timestamp=at,
        values=[
            MetricValue(metric=m, value=v, unit="C" if m == "temp" else None)
            for m, v in values.items()
        ],
    )


async def user_with_device(api: Api) -> tuple[Session, str]:
    _, user = await admin_and_user(api)
    device = await create_device(api, user)
    return user, device.id


async def readings_page(api: Api, user: Session, **variables: Any) -> Any:
    result = await api.execute(op("Readings"), variables, token=user.access_token)
    return result.data["readings"]


# ---------------------------------------------------------------- readings


async def test_list_readings_pages_newest_first_each_once(api: Api) -> None:
    user, device_id = await user_with_device(api)
    # 20 instants, two readings at two of them: ties are ordered by _id.
    series = [reading(device_id, T0 + timedelta(seconds=5 * i), temp=i) for i in range(20)]
    series += [
        reading(device_id, T0 + timedelta(seconds=5 * 7), temp=100),
        reading(device_id, T0, temp=101),
    ]
    await insert(series)
    expected = [
        r.values[0].value for r in sorted(series, key=lambda r: (r.timestamp, r.id), reverse=True)
    ]

    seen: list[float] = []
    after = None
    pages = 0
    while True:
        page = await readings_page(api, user, deviceId=device_id, first=6, after=after)
        pages += 1
        seen += [edge["node"]["values"][0]["value"] for edge in page["edges"]]
        assert [edge["cursor"] for edge in page["edges"]][-1:] == [
            page["pageInfo"]["endCursor"]
        ] or not page["edges"]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == expected
    assert pages == 4


async def test_list_readings_node_fields_contract(api: Api) -> None:
    user, device_id = await user_with_device(api)
    await insert([reading(device_id, T0, temp=21.5, hum=40)])
    page = await readings_page(api, user, deviceId=device_id)
    assert page["edges"][0]["node"] == {
        "deviceId": device_id,
        "timestamp": "2025-01-01T00:00:00+00:00",
        "anomaly": False,
        "values": [
            {"metric": "temp", "value": 21.5, "unit": "C"},
            {"metric": "hum", "value": 40.0, "unit": None},
        ],
    }
    assert page["pageInfo"] == {"hasNextPage": False, "endCursor": page["edges"][0]["cursor"]}


async def test_list_readings_range_from_inclusive_to_exclusive(api: Api) -> None:
    user, device_id = await user_with_device(api)
    await insert([reading(device_id, T0 + timedelta(seconds=5 * i), temp=i) for i in range(12)])
    page = await readings_page(
        api,
        user,
        deviceId=device_id,
        **{"from": iso(T0 + timedelta(seconds=15)), "to": iso(T0 + timedelta(seconds=40))},
    )
    assert [edge["node"]["values"][0]["value"] for edge in page["edges"]] == [7, 6, 5, 4, 3]


async def test_list_readings_range_with_cursor(api: Api) -> None:
    user, device_id = await user_with_device(api)
    await insert([reading(device_id, T0 + timedelta(seconds=5 * i), temp=i) for i in range(12)])
    window = {"from": iso(T0 + timedelta(seconds=10)), "to": iso(T0 + timedelta(seconds=45))}
    first = await readings_page(api, user, deviceId=device_id, first=4, **window)
    rest = await readings_page(
        api, user, deviceId=device_id, first=4, after=first["pageInfo"]["endCursor"], **window
    )
    values = [e["node"]["values"][0]["value"] for e in first["edges"] + rest["edges"]]
    assert values == [8, 7, 6, 5, 4, 3, 2]
    assert rest["pageInfo"]["hasNextPage"] is False


@pytest.mark.parametrize("seconds", [0, -5])
async def test_refuse_readings_from_not_before_to(api: Api, seconds: int) -> None:
    user, device_id = await user_with_device(api)
    result = await api.execute(
        op("Readings"),
        {"deviceId": device_id, "from": iso(T0), "to": iso(T0 + timedelta(seconds=seconds))},
        token=user.access_token,
    )
    assert result.code == "BAD_USER_INPUT"
    assert "from" in result.message


async def test_refuse_readings_foreign_device_not_found(api: Api) -> None:
    _, device_id = await user_with_device(api)
    await insert([reading(device_id, T0, temp=1)])
    other = await register(api)
    result = await api.execute(op("Readings"), {"deviceId": device_id}, token=other.access_token)
    assert result.code == "NOT_FOUND"


@pytest.mark.parametrize("cursor", ["not-a-cursor", "aWQ6NjU5ZjFjMmQ=", "cjoxMjM6bm9wZQ=="])
async def test_refuse_readings_malformed_cursor(api: Api, cursor: str) -> None:
    user, device_id = await user_with_device(api)
    result = await api.execute(
        op("Readings"), {"deviceId": device_id, "after": cursor}, token=user.access_token
    )
    assert result.code == "BAD_USER_INPUT"
    assert "after" in result.message


async def test_refuse_readings_unauthenticated(api: Api) -> None:
    _, device_id = await user_with_device(api)
    result = await api.execute(op("Readings"), {"deviceId": device_id})
    assert result.code == "UNAUTHENTICATED"


async def test_list_readings_sparse_history_pages_each_once(api: Api) -> None:
    user, device_id = await user_with_device(api)
    # Gaps from seconds to weeks.
    offsets = [0, 1, 2, 3600, 3601, 86400, 86400 * 3, 86400 * 20, 86400 * 20 + 5]
    await insert([reading(device_id, T0 - timedelta(seconds=o), temp=o) for o in offsets])
    # Stored, then the worker died before the latest value was applied (its pending
    # record is left for the repair): listed too, though the device document is behind.
    newest = reading(device_id, T0 + timedelta(minutes=90), temp=-1).model_dump(by_alias=True)
    await rollups.mark(rollups.Summary.of([newest]))
    await Reading.get_pymongo_collection().insert_one(newest)
    seen: list[float] = []
    after = None
    while True:
        page = await readings_page(api, user, deviceId=device_id, first=2, after=after)
        seen += [edge["node"]["values"][0]["value"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == [-1.0, *[float(o) for o in offsets]]
    # A range: only its readings, oldest bound inclusive.
    page = await readings_page(
        api,
        user,
        deviceId=device_id,
        first=10,
        **{"from": iso(T0 - timedelta(days=3)), "to": iso(T0 - timedelta(seconds=1))},
    )
    values = [edge["node"]["values"][0]["value"] for edge in page["edges"]]
    assert values == [2.0, 3600.0, 3601.0, 86400.0, 86400.0 * 3]
    assert page["pageInfo"]["hasNextPage"] is False


# ---------------------------------------------------------------- aggregate


async def aggregate(api: Api, user: Session, device_id: str, **variables: Any) -> Any:
    defaults = {
        "deviceId": device_id,
        "metric": "temp",
        "from": iso(T0),
        "to": iso(T0 + timedelta(minutes=3)),
        "bucket": "1m",
    }
    return await api.execute(op("Aggregate"), defaults | variables, token=user.access_token)


async def known_series(api: Api) -> tuple[Session, str]:
    """temp = i every 5 s in minutes 0 and 2 (minute 1 empty), plus noise to ignore."""
    user, device_id = await user_with_device(api)
    other_device = await create_device(api, user, name="other")
    instants = [i for i in range(36) if not 12 <= i < 24]
    series = [
        reading(device_id, T0 + timedelta(seconds=5 * i), temp=i, hum=1000 + i) for i in instants
    ]
    series += [reading(device_id, T0 + timedelta(seconds=5 * i + 1), hum=-1) for i in range(12, 24)]
    series += [reading(other_device.id, T0 + timedelta(seconds=5 * i), temp=-50) for i in range(36)]
    series += [reading(device_id, T0 - timedelta(seconds=1), temp=500)]
    series += [reading(device_id, T0 + timedelta(minutes=3), temp=500)]
    await insert(series)
    return user, device_id


def bucket(start: datetime, values: list[float]) -> dict[str, Any]:
    return {
        "start": iso(start),
        "count": len(values),
        "min": min(values),
        "max": max(values),
        "avg": sum(values) / len(values),
    }


async def test_aggregate_known_series_per_minute_oldest_first(api: Api) -> None:
    user, device_id = await known_series(api)
    result = await aggregate(api, user, device_id)
    assert result.data["aggregate"] == [
        bucket(T0, [float(i) for i in range(12)]),
        bucket(T0 + timedelta(minutes=2), [float(i) for i in range(24, 36)]),
    ]


async def test_aggregate_range_cuts_buckets(api: Api) -> None:
    user, device_id = await known_series(api)
    result = await aggregate(
        api,
        user,
        device_id,
        **{"from": iso(T0 + timedelta(seconds=30)), "to": iso(T0 + timedelta(seconds=150))},
    )
    assert result.data["aggregate"] == [
        bucket(T0, [float(i) for i in range(6, 12)]),
        bucket(T0 + timedelta(minutes=2), [float(i) for i in range(24, 30)]),
    ]


async def test_aggregate_ten_second_buckets(api: Api) -> None:
    user, device_id = await known_series(api)
    result = await aggregate(api, user, device_id, bucket="10s", to=iso(T0 + timedelta(seconds=30)))
    assert result.data["aggregate"] == [
        bucket(T0 + timedelta(seconds=s), [s / 5, s / 5 + 1]) for s in (0, 10, 20)
    ]


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({"bucket": "2m"}, "bucket"),
        ({"bucket": ""}, "bucket"),
        ({"metric": "bad metric!"}, "metric"),
        ({"metric": ""}, "metric"),
        ({"metric": "m" * 65}, "metric"),
        ({"to": iso(T0)}, "from"),
    ],
)
async def test_refuse_aggregate_bad_input(api: Api, variables: dict[str, str], field: str) -> None:
    user, device_id = await user_with_device(api)
    result = await aggregate(api, user, device_id, **variables)
    assert result.code == "BAD_USER_INPUT"
    assert result.message.startswith(f"{field}:")


async def test_refuse_aggregate_foreign_device_not_found(api: Api) -> None:
    _, device_id = await user_with_device(api)
    other = await register(api)
    result = await aggregate(api, other, device_id)
    assert result.code == "NOT_FOUND"
