"""Query benchmark: `python -m bench.queries [--quick]` (README, Performance, Queries).

Two contract operations against one API process, driven by clients on keep-alive
HTTP connections (one request in flight each):

- `Devices(first: 50)` with every device's `latestReading`, 20 clients, with the
  request's DataLoaders and without them (`python -m bench.baseline_api
  --per-item-loaders`: one query per device, the N+1 they remove);
- `Aggregate` of one metric over a day of 10-second data (8,640 readings, seeded in
  batches of 100) for one device, in 1-hour buckets: 20 clients on MongoDB
  (MONGODB_URL); 2 on the stand-in, which takes seconds of pure Python per
  aggregate (`--aggregate-clients` overrides).

Reports requests/s, p50/p99 latency, API CPU and MongoDB operations per request
(serverStatus opcounters query + command + getmore, the API's idle background rate
subtracted; the stand-in counts an aggregate as several), prints tables, writes
bench/results/queries.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from beanie import PydanticObjectId
from graphql import OperationDefinitionNode, parse, print_ast
from pymongo import AsyncMongoClient

from bench.apis import (
    ApiProcess,
    access_token,
    api_processes,
    bench_settings,
    graphql,
    load_average,
    new_user,
    private_redis,
)
from bench.harness import ROOT, Stack, cpu_seconds, print_table, stack, write_results
from bench.http_load import drive, request_bytes
from core.database import open_database
from ingest.store import insert_readings
from models.devices import Device
from models.readings import MetricValue, Reading

CONTRACT = ROOT / "contract" / "operations.graphql"
DEVICES = 50
READINGS_PER_DEVICE = 3
DAY_INTERVAL = timedelta(seconds=10)
DAY_READINGS = 8_640  # a day of 10-second data
BATCH = 100  # the stand-in is slow: small insert batches
CONCURRENCY = 20
IDLE_SECONDS = 2.0
DAY_START = datetime(2026, 1, 1, tzinfo=UTC)


def operation(name: str) -> str:
    """The text of one named operation of the contract."""
    for definition in parse(CONTRACT.read_text()).definitions:
        if isinstance(definition, OperationDefinitionNode) and (
            definition.name is not None and definition.name.value == name
        ):
            return print_ast(definition)
    raise KeyError(name)


@dataclass
class Fleet:
    token: str
    day_device: str


async def seed_fleet(stack: Stack) -> tuple[Fleet, float]:
    """One user and 50 devices with a few readings each; the seconds it took."""
    settings = bench_settings(stack)
    rng = random.Random(11)
    async with open_database(settings):
        owner = new_user("queries@example.com")
        await owner.insert()
        assert owner.id is not None
        devices = [
            Device(
                id=PydanticObjectId(),
                owner_id=owner.id,
                name=f"q-{n}",
                type="bench",
                mqtt_username=f"q-{owner.id}-{n}",
                mqtt_password_hash="-",  # noqa: S106 - never logs in
            )
            for n in range(DEVICES)
        ]
        await Device.insert_many(devices)
        started = time.monotonic()
        recent = [
            Reading(
                device_id=device.id,
                timestamp=DAY_START + timedelta(days=1, seconds=k),
                values=[MetricValue(metric="temperature", value=rng.uniform(15, 25), unit="°C")],
            )
            for device in devices
            for k in range(READINGS_PER_DEVICE)
        ]
        # By the write path: it keeps each device's latest reading (and the rollups).
        documents = [r.model_dump(by_alias=True) | {"_id": PydanticObjectId()} for r in recent]
        await insert_readings(documents, chunk_size=BATCH)
        assert devices[0].id is not None
        fleet = Fleet(access_token(settings, owner.id), str(devices[0].id))
        return fleet, time.monotonic() - started


async def seed_day(stack: Stack, device_id: str) -> float:
    """A day of 10-second readings (two metrics) for one device; the seconds it took."""
    rng = random.Random(13)
    device = PydanticObjectId(device_id)
    async with open_database(bench_settings(stack)):
        started = time.monotonic()
        for start in range(0, DAY_READINGS, BATCH):
            await insert_readings(
                [
                    Reading(
                        device_id=device,
                        timestamp=DAY_START + k * DAY_INTERVAL,
                        values=[
                            MetricValue(metric="temperature", value=rng.uniform(15, 25), unit="°C"),
                            MetricValue(metric="humidity", value=rng.uniform(30, 60), unit="%"),
                        ],
                    ).model_dump(by_alias=True)
                    | {"_id": PydanticObjectId()}
                    for k in range(start, min(start + BATCH, DAY_READINGS))
                ],
                chunk_size=BATCH,
            )
        return time.monotonic() - started


async def mongo_operations(stack: Stack) -> int:
    """Operations the server has counted (serverStatus opcounters, reads and commands)."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongodb_url)
    try:
        status = await client.admin.command("serverStatus")
        counters = status["opcounters"]
        return int(counters["query"]) + int(counters["command"]) + int(counters["getmore"])
    finally:
        await client.close()


async def scenario(
    stack: Stack,
    api: ApiProcess,
    name: str,
    request: bytes,
    seconds: float,
    clients: int,
    *,
    count_operations: bool = True,
) -> dict[str, Any]:
    # Warm-up: first-use costs (imports, caches, connections) out of the measurement.
    await drive(api.url, request, min(1.0, seconds), 1)
    # The API's background work (dispatchers, monitors) counts too: measure it idle.
    idle_before = await mongo_operations(stack)
    await asyncio.sleep(IDLE_SECONDS)
    background = (await mongo_operations(stack) - idle_before - 1) / IDLE_SECONDS
    operations_before = await mongo_operations(stack)
    cpu_before = cpu_seconds(api.pid)
    started = time.perf_counter()
    result = await drive(api.url, request, seconds, clients)
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(api.pid) - cpu_before
    # One serverStatus (this one's predecessor) is counted among the operations.
    operations = await mongo_operations(stack) - operations_before - 1 - background * elapsed
    return {
        "scenario": name,
        "clients": clients,
        **result,
        # A handful of slow requests would drown in the background: not counted then.
        "mongo_operations_per_request": round(operations / max(result["requests"], 1), 1)
        if count_operations
        else None,
        "api_cpu_ms_per_request": round(cpu / max(result["requests"], 1) * 1000, 2),
        "load_average": load_average(),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    seconds = 2.0 if args.quick else args.seconds
    load_before = load_average()
    devices_query, aggregate_query = operation("Devices"), operation("Aggregate")
    results = []
    with stack() as running, private_redis() as redis_url:
        fleet, fleet_seconds = await seed_fleet(running)
        devices = request_bytes("http://x", fleet.token, devices_query, {"first": DEVICES})
        # The devices first, while the collection holds their few readings: the
        # stand-in scans the whole collection for each query (a real MongoDB uses the
        # time-series index), so the day's readings would measure the stand-in.
        for loaders in (True, False):
            module = ("api",) if loaders else ("bench.baseline_api", "--per-item-loaders")
            with api_processes(running, redis_url, 1, module=module) as (api,):
                check = graphql(api.url, devices_query, {"first": DEVICES}, token=fleet.token)
                edges = check["data"]["devices"]["edges"]
                assert len(edges) == DEVICES and all(e["node"]["latestReading"] for e in edges)
                mode = "DataLoader" if loaders else "no DataLoader"
                print(f"queries: devices, {mode} ...", flush=True)
                name = f"devices(first: 50) + latestReading, {mode}"
                results.append(await scenario(running, api, name, devices, seconds, CONCURRENCY))
        print("queries: seeding a day of 10-second readings ...", flush=True)
        day_seconds = await seed_day(running, fleet.day_device)
        aggregate_variables = {
            "deviceId": fleet.day_device,
            "metric": "temperature",
            "from": DAY_START.isoformat(),
            "to": (DAY_START + timedelta(days=1)).isoformat(),
            "bucket": "1h",
        }
        aggregate = request_bytes("http://x", fleet.token, aggregate_query, aggregate_variables)
        with api_processes(running, redis_url, 1) as (api,):
            check = graphql(api.url, aggregate_query, aggregate_variables, token=fleet.token)
            buckets = check["data"]["aggregate"]
            assert sum(b["count"] for b in buckets) == DAY_READINGS, buckets[:2]
            print("queries: aggregate ...", flush=True)
            name = "aggregate(1 day of 10 s data, 1h buckets)"
            results.append(
                await scenario(
                    running,
                    api,
                    name,
                    aggregate,
                    seconds,
                    args.aggregate_clients,
                    count_operations=False,
                )
            )
    batched, unbatched = results[0], results[1]
    return {
        "quick": args.quick,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "seconds_per_scenario": seconds,
        "seed": {
            "devices": DEVICES,
            "readings_per_device": READINGS_PER_DEVICE,
            "day_readings": DAY_READINGS,
            "batch": BATCH,
            "fleet_seconds": round(fleet_seconds, 1),
            "day_seconds": round(day_seconds, 1),
        },
        "scenarios": results,
        "dataloader": {
            "requests_per_s_ratio": round(
                batched["requests_per_s"] / max(unbatched["requests_per_s"], 0.01), 2
            ),
            "mongo_operations_removed_per_request": round(
                unbatched["mongo_operations_per_request"] - batched["mongo_operations_per_request"],
                1,
            ),
        },
    }


def report(results: dict[str, Any]) -> None:
    seed = results["seed"]
    print(
        f"\nSeeded {seed['devices']} devices with {seed['readings_per_device']} readings each "
        f"({seed['fleet_seconds']} s), then {seed['day_readings']:,} readings of one day in "
        f"batches of {seed['batch']} ({seed['day_seconds']} s)."
    )
    print_table(
        "Queries",
        [
            "scenario",
            "clients",
            "req/s",
            "p50 ms",
            "p99 ms",
            "Mongo ops/req",
            "API CPU ms/req",
            "errors",
            "load",
        ],
        [
            [
                s["scenario"],
                s["clients"],
                s["requests_per_s"],
                s["p50_ms"],
                s["p99_ms"],
                "—"
                if s["mongo_operations_per_request"] is None
                else s["mongo_operations_per_request"],
                s["api_cpu_ms_per_request"],
                s["errors"],
                s["load_average"][0],
            ]
            for s in results["scenarios"]
        ],
    )
    loader = results["dataloader"]
    print(
        f"\nDataLoader: {loader['requests_per_s_ratio']}x the requests/s, "
        f"{loader['mongo_operations_removed_per_request']} MongoDB operations fewer per request."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.queries", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 s per scenario")
    parser.add_argument("--seconds", type=float, default=20.0, help="per scenario")
    parser.add_argument(
        "--aggregate-clients",
        type=int,
        default=CONCURRENCY if os.environ.get("MONGODB_URL") else 2,
        help="concurrent aggregate clients (default 20 on MongoDB, 2 on the stand-in, which "
        "takes seconds per aggregate: 20 queued ones outlast PyMongo's monitor timeout)",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = asyncio.run(main_async(args))
    report(results)
    path = write_results("queries-quick" if args.quick else "queries", results)
    print(f"\nwrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
