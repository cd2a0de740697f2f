"""Expensive reads are priced: aggregate costs its buckets within the operation's cost
limit, refused before MongoDB is asked; every read of a query carries maxTimeMS, and
running out of it is a clear contract error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from beanie import PydanticObjectId

from core.settings import Settings
from models.readings import MetricValue, Reading
from tests.client import Api
from tests.commands import CommandCounter
from tests.contract import op
from tests.factories import create_device, register
from tests.processes import api_process

START = datetime(2025, 1, 1, tzinfo=UTC)
READS = {"find", "aggregate", "count", "distinct", "getMore"}


def literal_aggregate(alias: str, device_id: str, end: datetime, bucket: str) -> str:
    return (
        f'{alias}: aggregate(deviceId: "{device_id}", metric: "temp", '
        f'from: "{START.isoformat()}", to: "{end.isoformat()}", bucket: "{bucket}") '
        "{ start count }"
    )


@pytest.mark.parametrize("form", ["variables", "literals"])
async def test_aggregate_year_at_10s_buckets_query_too_complex_before_database(
    api: Api, command_counter: CommandCounter, form: str
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    year = START + timedelta(days=365)
    command_counter.recording = True
    if form == "variables":
        variables = {
            "deviceId": device.id,
            "metric": "temp",
            "from": START.isoformat(),
            "to": year.isoformat(),
            "bucket": "10s",
        }
        result = await api.execute(op("Aggregate"), variables, token=user.access_token)
    else:
        query = "{ " + literal_aggregate("a", device.id, year, "10s") + " }"
        result = await api.execute(query, token=user.access_token)
    command_counter.recording = False

    assert result.code == "QUERY_TOO_COMPLEX", result.errors
    assert "aggregate" not in command_counter.commands


async def test_aggregate_aliases_cost_summed_query_too_complex(api: Api) -> None:
    user = await register(api)
    device = await create_device(api, user)
    # 2,000 one-minute buckets each: under the per-call bucket limit, 3 x over the cost.
    end = START + timedelta(minutes=2000)
    query = (
        "{ " + " ".join(literal_aggregate(f"a{i}", device.id, end, "1m") for i in range(3)) + " }"
    )

    result = await api.execute(query, token=user.access_token)

    assert result.code == "QUERY_TOO_COMPLEX", result.errors


async def test_aggregate_day_at_1m_buckets_answers(api: Api) -> None:
    user = await register(api)
    device = await create_device(api, user)
    variables = {
        "deviceId": device.id,
        "metric": "temp",
        "from": START.isoformat(),
        "to": (START + timedelta(days=1)).isoformat(),
        "bucket": "1m",
    }

    result = await api.execute(op("Aggregate"), variables, token=user.access_token)

    assert result.data["aggregate"] == []


async def test_query_reads_carry_max_time_ms(
    api: Api, settings: Settings, command_counter: CommandCounter
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    command_counter.recording = True
    await api.execute(op("Devices"), {"first": 5}, token=user.access_token)
    await api.execute(op("Readings"), {"deviceId": device.id}, token=user.access_token)
    await api.execute(
        op("Aggregate"),
        {
            "deviceId": device.id,
            "metric": "temp",
            "from": START.isoformat(),
            "to": (START + timedelta(hours=1)).isoformat(),
            "bucket": "1m",
        },
        token=user.access_token,
    )
    await api.execute(op("Me"), token=user.access_token)
    command_counter.recording = False

    reads = [c for c in command_counter.documents if READS & c.keys()]
    assert {next(iter(c)) for c in reads} >= {"find", "aggregate"}
    for command in reads:
        assert 0 < command.get("maxTimeMS", 0) <= settings.mongodb_query_max_time_ms, command


async def test_query_over_database_time_limit_query_too_complex(settings: Settings) -> None:
    # 1 ms for all of a query's reads: thousands of readings take the stand-in far longer.
    # The API runs as a process of its own: a budget that small runs out on the client
    # side too, where PyMongo drops the connection for the garbage collector to close,
    # and in this process that ResourceWarning would fail whichever test collects it.
    async with api_process(settings, MONGODB_QUERY_MAX_TIME_MS="1") as url, Api(url) as api:
        user = await register(api)  # mutations are not bounded this way
        device = await create_device(api, user)
        await Reading.get_pymongo_collection().insert_many(
            Reading(
                device_id=PydanticObjectId(device.id),
                timestamp=START + timedelta(seconds=i),
                values=[MetricValue(metric="temp", value=float(i))],
            ).model_dump(by_alias=True, exclude={"id"})
            for i in range(5000)
        )
        variables = {
            "deviceId": device.id,
            "metric": "temp",
            "from": START.isoformat(),
            "to": (START + timedelta(days=1)).isoformat(),
            "bucket": "1h",
        }

        result = await api.execute(op("Aggregate"), variables, token=user.access_token)

    assert result.code == "QUERY_TOO_COMPLEX", result.errors
    assert "took too long" in result.message
