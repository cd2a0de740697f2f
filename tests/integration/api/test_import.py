"""POST /import/readings: backfill with original timestamps, validated like telemetry,
counted drops, stored once however often the same file comes, its own body limit, and
only into a device the caller may change."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from beanie import PydanticObjectId

from core.settings import Settings
from models.accounts import utcnow
from models.devices import Device
from tests.client import Api
from tests.contract import op
from tests.factories import admin_and_user, create_device, register
from tests.integration.api.readings_io import export, import_, seed, stored

T0 = datetime(2025, 3, 1, tzinfo=UTC)


async def test_import_csv_stores_original_timestamps_counts_drops(api: Api) -> None:
    _admin, user = await admin_and_user(api)
    device = await create_device(api, user)
    future = (utcnow() + timedelta(hours=1)).isoformat()
    body = "\n".join(
        [
            "timestamp,metric,value,unit",
            "2025-03-01T00:00:00Z,temperature,21.5,°C",
            "2025-03-01T00:00:00Z,humidity,40,",  # same time: the same reading
            "2025-03-01 00:00:10,temperature,22,°C",  # zoneless: UTC
            "1740787220000,temperature,22.5,°C",  # epoch milliseconds (ts)
            "2025-03-01T00:00:30Z,bad name,1,",
            "2025-03-01T00:00:40Z,temperature,nan,",
            "2025-03-01T00:00:50Z,temperature,warm,",
            "yesterday,temperature,1,",
            f"{future},temperature,1,",
            "2025-03-01T00:01:00Z,short",
        ]
    ).encode()
    response = await import_(api.http, user, body, deviceId=device.id, format="csv")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "stored": 3,
        "dropped": {
            "bad_metric_name": 1,
            "non_finite": 1,
            "no_metrics": 1,
            "bad_timestamp": 1,
            "future_timestamp": 1,
            "bad_shape": 1,
        },
    }
    readings = await stored(device.id)
    assert [r["timestamp"] for r in readings] == [
        T0,
        T0 + timedelta(seconds=10),
        T0 + timedelta(seconds=20),
    ]
    assert readings[0]["values"] == [
        {"metric": "temperature", "value": 21.5, "unit": "°C"},
        {"metric": "humidity", "value": 40.0, "unit": None},
    ]
    result = await api.execute(op("Device"), {"id": device.id}, token=user.access_token)
    assert set(result.data["device"]["metrics"]) == {"temperature", "humidity"}


async def test_import_jsonl_validated_as_telemetry(api: Api) -> None:
    _admin, user = await admin_and_user(api)
    device = await create_device(api, user)
    lines = [
        {"timestamp": "2025-03-01T00:00:00Z", "temperature": 1},
        [{"ts": 1740787210000, "temperature": 2}, {"ts": 1740787220000, "temperature": 3}],
        {"timestamp": "2025-03-01T00:00:30Z", "temperature": {"value": 4, "unit": "°C"}},
        {"timestamp": "2025-03-01T00:00:40Z", "note": "strings are ignored"},
        {"timestamp": "2025-03-01T00:00:50Z", **{f"m{i}": i for i in range(101)}},
    ]
    body = b"\n".join(json.dumps(line).encode() for line in lines) + b"\n{not json\n"
    body += b'{"temperature": ' + b"1" * 70_000 + b"}\n"  # over the telemetry payload limit
    response = await import_(api.http, user, body, deviceId=device.id, format="jsonl")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "stored": 4,
        "dropped": {"no_metrics": 1, "too_many_metrics": 1, "bad_json": 1, "too_large": 1},
    }
    values = [r["values"][0]["value"] for r in await stored(device.id)]
    assert values == [1.0, 2.0, 3.0, 4.0]


async def test_import_export_roundtrip_and_reimport_stores_once(api: Api) -> None:
    _admin, user = await admin_and_user(api)
    source = await create_device(api, user)
    target = await create_device(api, user, name="copy")
    await seed(source.id, T0, 1500)
    for format in ("jsonl", "csv"):
        exported = await export(api.http, user, deviceId=source.id, format=format)
        first = await import_(api.http, user, exported.content, deviceId=target.id, format=format)
        if format == "jsonl":
            assert first.json() == {"stored": 1500, "dropped": {}}
        else:  # the same readings again, in the other format: all already there
            assert first.json() == {"stored": 0, "dropped": {"duplicate": 1500}}
        assert await stored(target.id) == await stored(source.id)


async def test_import_older_than_retention_dropped_expired(api: Api) -> None:
    _admin, user = await admin_and_user(api)
    device = await create_device(api, user)
    await api.execute(
        op("SetRetention"), {"id": device.id, "retentionDays": 7}, token=user.access_token
    )
    old = (utcnow() - timedelta(days=8)).isoformat()
    recent = (utcnow() - timedelta(days=6)).isoformat()
    body = f"timestamp,metric,value,unit\n{old},t,1,\n{recent},t,2,\n".encode()
    response = await import_(api.http, user, body, deviceId=device.id, format="csv")
    assert response.json() == {"stored": 1, "dropped": {"expired": 1}}


async def test_import_other_users_device_not_found_nothing_stored(api: Api) -> None:
    _admin, owner = await admin_and_user(api)
    attacker = await register(api)
    device = await create_device(api, owner)
    body = b"timestamp,metric,value,unit\n2025-03-01T00:00:00Z,temperature,99,\n"
    response = await import_(api.http, attacker, body, deviceId=device.id, format="csv")
    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"
    response = await import_(api.http, None, body, deviceId=device.id, format="csv")
    assert response.status_code == 401
    assert await stored(device.id) == []
    owned = await Device.get(PydanticObjectId(device.id))
    assert owned is not None and owned.metrics == []


async def test_import_csv_without_header_bad_input(api: Api) -> None:
    _admin, user = await admin_and_user(api)
    device = await create_device(api, user)
    body = b"2025-03-01T00:00:00Z,temperature,1,\n"
    response = await import_(api.http, user, body, deviceId=device.id, format="csv")
    assert response.status_code == 400
    assert response.json()["code"] == "BAD_USER_INPUT"
    assert await stored(device.id) == []


async def test_import_body_over_general_limit_accepted_under_import_limit(
    api: Api, settings: Settings
) -> None:
    _admin, user = await admin_and_user(api)
    device = await create_device(api, user)
    row = b"2025-03-01T00:00:00Z,bad name,1,\n"
    count = settings.http_max_body_bytes // len(row) + 1000
    body = b"timestamp,metric,value,unit\n" + row * count
    assert settings.http_max_body_bytes < len(body) < settings.import_max_body_bytes
    response = await import_(api.http, user, body, deviceId=device.id, format="csv")
    assert response.status_code == 200, response.text
    assert response.json() == {"stored": 0, "dropped": {"bad_metric_name": count}}


async def test_import_declared_body_over_import_limit_refused_unread(
    api: Api, api_server: str, settings: Settings
) -> None:
    _admin, user = await admin_and_user(api)
    device = await create_device(api, user)
    address = urlsplit(api_server)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    try:
        head = [
            f"POST /import/readings?deviceId={device.id}&format=csv HTTP/1.1",
            f"Host: {address.netloc}",
            f"Authorization: Bearer {user.access_token}",
            f"Content-Length: {settings.import_max_body_bytes + 1}",
            "",
            "",
        ]
        writer.write("\r\n".join(head).encode() + b"timestamp,metric,value,unit\n")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert await stored(device.id) == []
