"""GET /export/readings: the range oldest first, CSV or JSON Lines, in constant memory,
and only for whoever may see the device."""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
from datetime import UTC, datetime, timedelta

import pytest

from services import exports
from tests.client import Api
from tests.factories import admin_and_user, create_device, register
from tests.integration.api.readings_io import auth, export, seed

T0 = datetime(2025, 3, 1, tzinfo=UTC)


def csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


async def test_export_csv_range_oldest_first(api: Api) -> None:
    _admin, user = await admin_and_user(api)
    device = await create_device(api, user)
    await seed(device.id, T0, 30)
    frm, to = T0 + timedelta(seconds=50), T0 + timedelta(seconds=150)
    response = await export(
        api.http, user, deviceId=device.id, **{"from": frm.isoformat(), "to": to.isoformat()}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert device.id in response.headers["content-disposition"]
    rows = csv_rows(response.text)
    assert rows[0] == ["timestamp", "metric", "value", "unit"]
    # [from, to): readings 5..14, two rows each, in the stored order of their values.
    assert len(rows) == 1 + 10 * 2
    assert rows[1] == ["2025-03-01T00:00:50.000Z", "temperature", "20.625", "°C"]
    assert rows[2] == ["2025-03-01T00:00:50.000Z", "humidity", "5.0", ""]
    assert rows[-1][0] == "2025-03-01T00:02:20.000Z"
    stamps = [row[0] for row in rows[1:]]
    assert stamps == sorted(stamps)


async def test_export_jsonl_reading_objects(api: Api) -> None:
    _admin, user = await admin_and_user(api)
    device = await create_device(api, user)
    await seed(device.id, T0, 3)
    response = await export(api.http, user, deviceId=device.id, format="jsonl")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines[0] == {
        "timestamp": "2025-03-01T00:00:00.000Z",
        "temperature": {"value": 20.0, "unit": "°C"},
        "humidity": 0.0,
    }
    assert [line["timestamp"][17:19] for line in lines] == ["00", "10", "20"]


async def test_export_keyset_pages_keep_ties_once(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exports, "EXPORT_PAGE", 7)
    monkeypatch.setattr(exports, "EXPORT_FETCH", 3)
    _admin, user = await admin_and_user(api)
    device = await create_device(api, user)
    # Three readings at each time: pages end in the middle of a tie.
    for _ in range(3):
        await seed(device.id, T0, 10, step_s=1)
    response = await export(api.http, user, deviceId=device.id, format="jsonl")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert len(lines) == 30
    stamps = [line["timestamp"] for line in lines]
    assert stamps == sorted(stamps)
    assert all(stamps.count(stamp) == 3 for stamp in stamps)


async def test_export_tie_group_larger_than_a_fetch_once_each(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exports, "EXPORT_PAGE", 7)
    monkeypatch.setattr(exports, "EXPORT_FETCH", 3)
    _admin, user = await admin_and_user(api)
    device = await create_device(api, user)
    await seed(device.id, T0 - timedelta(seconds=2), 2, step_s=1)
    for _ in range(10):  # ten readings at T0 (an array published without times)
        await seed(device.id, T0, 1)
    await seed(device.id, T0 + timedelta(seconds=1), 4, step_s=1)
    response = await export(api.http, user, deviceId=device.id, format="jsonl")
    stamps = [json.loads(line)["timestamp"] for line in response.text.splitlines()]
    assert len(stamps) == 16
    assert stamps == sorted(stamps)
    assert stamps.count("2025-03-01T00:00:00.000Z") == 10


async def test_export_other_users_device_not_found(api: Api) -> None:
    _admin, owner = await admin_and_user(api)
    attacker = await register(api)
    device = await create_device(api, owner)
    await seed(device.id, T0, 5)
    response = await export(api.http, attacker, deviceId=device.id)
    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"
    assert "2025" not in response.text


async def test_export_without_or_with_bad_token_unauthenticated(api: Api) -> None:
    _admin, user = await admin_and_user(api)
    device = await create_device(api, user)
    response = await export(api.http, None, deviceId=device.id)
    assert response.status_code == 401
    response = await api.http.get(
        "/export/readings",
        params={"deviceId": device.id},
        headers={"Authorization": "Bearer not-a-token"},
    )
    assert response.status_code == 401
    assert response.json()["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"format": "xml"}, "format"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2025-03-02T00:00:00Z", "to": "2025-03-01T00:00:00Z"}, "from"),
        ({"deviceId": "nope"}, "id"),
    ],
)
async def test_export_bad_parameters_bad_input(
    api: Api, params: dict[str, str], field: str
) -> None:
    _admin, user = await admin_and_user(api)
    device = await create_device(api, user)
    response = await export(api.http, user, **({"deviceId": device.id} | params))
    assert response.status_code == 400
    assert response.json()["code"] == "BAD_USER_INPUT"
    assert response.json()["error"].startswith(field)


async def test_export_memory_bounded_whatever_the_range(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Several keyset pages in the large export; the in-process API is what is traced.
    monkeypatch.setattr(exports, "EXPORT_PAGE", 2000)
    monkeypatch.setattr(exports, "EXPORT_FETCH", 250)
    _admin, user = await admin_and_user(api)
    device = await create_device(api, user)
    await seed(device.id, T0, 8000)

    async def peak_of(count: int) -> tuple[int, int]:
        to = (T0 + timedelta(seconds=10 * count)).isoformat()
        tracemalloc.start()
        try:
            rows = 0
            params = {"deviceId": device.id, "to": to}
            async with api.http.stream(
                "GET", "/export/readings", params=params, headers=auth(user)
            ) as response:
                async for line in response.aiter_lines():
                    rows += bool(line)
            return rows, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small_rows, small_peak = await peak_of(500)
    large_rows, large_peak = await peak_of(8000)
    assert (small_rows, large_rows) == (1 + 500 * 2, 1 + 8000 * 2)
    # 16 times the rows; holding them would cost megabytes more (about 1 KiB each).
    assert large_peak < small_peak + 1024 * 1024, (small_peak, large_peak)
