"""Export benchmark: `python -m bench.export [--quick] [--readings N]` (docs/performance.md).

One API process (`python -m api`) on the stand-in (or MONGODB_URL), one device with
N readings of two metrics (default 50,000: 100,000 CSV rows), seeded straight into
MongoDB in batches of 1,000. After a small warm-up export, the whole range is exported
as CSV and as JSON Lines by one streaming HTTP client; the API's resident memory is
sampled every 20 ms meanwhile. Reports rows/s (CSV rows: one per metric value; JSON
Lines: one per reading), MB/s and the API's RSS growth over its post-warm-up level
against the targets (>= 20,000 rows/s, < 50 MB), prints a table, writes
bench/results/export.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from bson import ObjectId
from pymongo import AsyncMongoClient

from bench.apis import (
    access_token,
    api_processes,
    bench_settings,
    load_average,
    new_user,
    private_redis,
    rss_kib,
)
from bench.harness import Stack, cpu_seconds, print_table, stack, write_results
from core.database import open_database
from models.devices import Device

START = datetime(2026, 1, 1, tzinfo=UTC)
STEP = timedelta(seconds=10)
SEED_BATCH = 1000
TARGET_ROWS_PER_S = 20_000
TARGET_RSS_GROWTH_MB = 50


async def seed(stack: Stack, readings: int) -> tuple[str, str, float]:
    """A user, a device and its readings; (token, device id, seconds seeding took)."""
    settings = bench_settings(stack)
    async with open_database(settings):
        owner = new_user("export@example.com")
        await owner.insert()
        assert owner.id is not None
        device_id = ObjectId()
        await Device(
            id=device_id,
            owner_id=owner.id,
            name="export",
            type="bench",
            mqtt_username=str(device_id),
            mqtt_password_hash="-",  # noqa: S106 - never logs in
        ).insert()
        token = access_token(settings, owner.id)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongodb_url)
    collection = client[stack.database]["readings"]
    started = time.monotonic()
    try:
        for first in range(0, readings, SEED_BATCH):
            await collection.insert_many(
                [
                    {
                        "_id": ObjectId(),
                        "device_id": device_id,
                        "timestamp": START + k * STEP,
                        "values": [
                            {"metric": "temperature", "value": 15 + (k % 997) / 97, "unit": "°C"},
                            {"metric": "humidity", "value": 30 + (k % 89) / 3, "unit": "%"},
                        ],
                        "anomaly": False,
                    }
                    for k in range(first, min(first + SEED_BATCH, readings))
                ]
            )
    finally:
        await client.close()
    return token, str(device_id), time.monotonic() - started


def standin_pid() -> int | None:
    """The stand-in this benchmark started (a child of this process), if any."""
    for stat in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            command = stat.read_bytes()
            parent = int((stat.parent / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == os.getpid() and b"devstack.mongo_standin" in command:
            return int(stat.parent.name)
    return None


async def export_once(
    url: str, token: str, params: dict[str, str], pid: int
) -> dict[str, float | int]:
    """Stream one export; its rows, bytes, seconds, the API's peak RSS meanwhile and the
    CPU seconds the API and the stand-in spent."""
    database = standin_pid()
    cpu_before = cpu_seconds(pid), cpu_seconds(database) if database else 0.0
    peak = rss_kib(pid)
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_kib(pid))
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    rows = size = 0
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        headers = {"Authorization": f"Bearer {token}"}
        async with http.stream(
            "GET", "/export/readings", params=params, headers=headers
        ) as response:
            response.raise_for_status()
            async for chunk in response.aiter_bytes():
                rows += chunk.count(b"\n")
                size += len(chunk)
    seconds = time.perf_counter() - started
    done.set()
    await sampler
    if params.get("format") == "csv":
        rows -= 1  # the header
    return {
        "rows": rows,
        "bytes": size,
        "seconds": seconds,
        "peak_rss_kib": peak,
        "api_cpu": cpu_seconds(pid) - cpu_before[0],
        "database_cpu": (cpu_seconds(database) - cpu_before[1]) if database else 0.0,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    readings = 5_000 if args.quick else args.readings
    load_before = load_average()
    with stack() as running, private_redis() as redis_url:
        print(f"export: seeding {readings:,} readings ...", flush=True)
        token, device_id, seed_seconds = await seed(running, readings)
        # Keep the seeded (past) readings: the deleter runs in this API too.
        extra = {"READING_RETENTION_DAYS": "20000"}
        with api_processes(running, redis_url, 1, **extra) as (api,):
            warm_to = (START + 1000 * STEP).isoformat()
            for format in ("csv", "jsonl"):
                params = {"deviceId": device_id, "format": format, "to": warm_to}
                await export_once(api.url, token, params, api.pid)
            baseline = rss_kib(api.pid)
            runs = []
            for format in ("csv", "jsonl"):
                print(f"export: {format} ...", flush=True)
                params = {"deviceId": device_id, "format": format}
                run = await export_once(api.url, token, params, api.pid)
                expected = readings * 2 if format == "csv" else readings
                assert run["rows"] == expected, (run, expected)
                runs.append(
                    {
                        "format": format,
                        "rows": run["rows"],
                        "seconds": round(run["seconds"], 2),
                        "rows_per_s": round(run["rows"] / run["seconds"]),
                        "readings_per_s": round(readings / run["seconds"]),
                        "mb_per_s": round(run["bytes"] / run["seconds"] / 1e6, 2),
                        "rss_growth_mb": round((run["peak_rss_kib"] - baseline) / 1024, 1),
                        "api_cpu_us_per_row": round(run["api_cpu"] / run["rows"] * 1e6, 1),
                        # What one core of API could send, the database aside.
                        "api_rows_per_cpu_s": round(run["rows"] / max(run["api_cpu"], 1e-9)),
                        "database_cpu_s": round(run["database_cpu"], 2),
                    }
                )
            final_rss = rss_kib(api.pid)
        retention = await retention_passes(running, redis_url, device_id, readings)
    return {
        "quick": args.quick,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "readings": readings,
        "seed_seconds": round(seed_seconds, 1),
        "api_rss_after_warmup_mb": round(baseline / 1024, 1),
        "api_rss_after_exports_mb": round(final_rss / 1024, 1),
        "targets": {"rows_per_s": TARGET_ROWS_PER_S, "rss_growth_mb": TARGET_RSS_GROWTH_MB},
        "runs": runs,
        "retention": retention,
    }


async def retention_passes(
    stack: Stack, redis_url: str, device_id: str, readings: int
) -> list[dict[str, Any]]:
    """A retention pass over the seeded readings that finds nothing to delete, then one
    that deletes the device's first day or so: seconds, documents, stand-in CPU."""
    from redis.asyncio import Redis

    from services.retention import RetentionDeleter

    base = bench_settings(stack).model_copy(update={"redis_url": redis_url})
    # Whole days back to a day after the first reading: the cutoff falls in the data.
    into_data = (datetime.now(UTC) - START).days - 1
    passes = []
    redis = Redis.from_url(redis_url)
    try:
        async with open_database(base):
            for label, days in (("nothing to delete", 20_000), ("deletes", into_data)):
                settings = base.model_copy(update={"reading_retention_days": days})
                database = standin_pid()
                cpu = cpu_seconds(database) if database else 0.0
                started = time.perf_counter()
                deleted = await RetentionDeleter(settings, redis).run_pass_leased()
                seconds = time.perf_counter() - started
                passes.append(
                    {
                        "pass": label,
                        "readings": readings,
                        "deleted": deleted,
                        "seconds": round(seconds, 2),
                        "database_cpu_s": round(cpu_seconds(database) - cpu, 2)
                        if database
                        else None,
                    }
                )
                readings -= deleted or 0
    finally:
        await redis.aclose()
    return passes


def report(results: dict[str, Any]) -> None:
    rows = [
        [
            run["format"],
            f"{run['rows']:,}",
            run["seconds"],
            f"{run['rows_per_s']:,}",
            f"{run['readings_per_s']:,}",
            run["mb_per_s"],
            run["rss_growth_mb"],
            f"{run['api_rows_per_cpu_s']:,}",
            run["database_cpu_s"],
        ]
        for run in results["runs"]
    ]
    print_table(
        f"export of {results['readings']:,} readings (seeded in {results['seed_seconds']} s); "
        f"targets >= {TARGET_ROWS_PER_S:,} rows/s, RSS growth < {TARGET_RSS_GROWTH_MB} MB",
        [
            "format",
            "rows",
            "s",
            "rows/s",
            "readings/s",
            "MB/s",
            "API RSS growth MB",
            "rows per API CPU s",
            "database CPU s",
        ],
        rows,
    )


def report_retention(results: dict[str, Any]) -> None:
    print_table(
        "retention passes over the same readings (batches of 1,000, 100 ms apart)",
        ["pass", "readings", "deleted", "s", "database CPU s"],
        [
            [
                p["pass"],
                f"{p['readings']:,}",
                f"{p['deleted']:,}",
                p["seconds"],
                p["database_cpu_s"],
            ]
            for p in results["retention"]
        ],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 readings: a smoke run")
    parser.add_argument("--readings", type=int, default=50_000)
    args = parser.parse_args(argv)
    results = asyncio.run(main_async(args))
    report(results)
    report_retention(results)
    if not args.quick:
        print(f"\nwritten: {write_results('export', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
