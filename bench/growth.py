"""Data-growth benchmark: `python -m bench.growth [--sizes 10000,100000] [--seconds 5]
[--database stand-in|secantus]` (the tests' stand-in, or `make run`'s SecantusDB).

At each size (readings in all, over 50 devices, one reading a minute each with two
metrics, ending now; rollups and latest values as the write path leaves them, see
"Seeding" below), 20 concurrent clients (asyncio tasks in this process, each one request
in flight) run against the database:

- aggregate of one device's metric over 1 day and over 30 days in 1-hour buckets:
  rollups (`services.rollups.aggregate_buckets`, this branch) beside the raw aggregation
  (`services.readings.raw_buckets`, main's code path);
- the latest reading of 50 devices: the API's device page, `devices(first: 50)
  { latestReading }` (the device documents; no totalCount asked, so none counted),
  beside main's `graph.loaders.load_latest_readings` (a `$group` over the readings);
- the first history page (50 readings) of one device, hour by hour
  (`services.reading_hours.newest_first`) beside main's `services.keyset.time_page`;
- an export of one device's month as CSV (`services.exports.Export.chunks`), rows/s;
- the baseline: a find of one small document by `_id`, the database's own cost of a
  round trip at 20 clients (the stand-in serves one command at a time, ~1.5 ms each).

Main's scenarios that outlast the driver's timeouts at one size are not run at the
next; those whose p99 passed ALONE_AFTER_MS are timed once, by one client ("alone" in
the JSON): 20 clients would leave the stand-in busy for many minutes with requests
nobody waits for.

It measures the service layer over the real driver and database, not GraphQL/HTTP
(bench/queries.py measures those). Prints a table per size, writes
bench/results/growth.json.

Seeding (`seed_from_memory`) stores what the write path would have stored, had the
worker taken the readings 1,000 at a time and flushed their rollups every 2 batches
(`seed_through_write_path`: `ingest.store.insert_readings` with an `Accumulator`):
the same readings, rollup documents equal to the last bit of their sums and to their
versions, latest readings, no pending record (tests/integration/bench/
test_growth_seed.py compares the two). The readings go through `insert_readings` as
before; the rollups are added up in memory in the write path's order, and each rollup
document is inserted once, at the end.

Why: on the stand-in most of the write path's time went to its rollup upserts, whose
cost grows with the fields they touch (about 2 ms an upsert plus 0.5 ms per minute of
the document it adds to, again at every flush touching the document), where inserting
a whole hour's document costs 13 ms. bench/seed_parts.py times the write path's parts.
Measured back to back (load 1.7-2.0): the write path 3.0-3.3 s per 1,000 readings,
this seed 1.5-1.9 s, of which about 1.1 s is the readings' own `insert_many` (the
stand-in encodes and validates every document: about 1.1 ms a reading, whatever the
chunk size). 1,000,000 readings (seeded 10k, 100k, then 1M, as --sizes would) took
29 min from memory at load 1.1-2.7, and 14 min on a quiet machine (load 1.0; the
stand-in held about 8 GB); through the write path they would take about an hour.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from beanie import PydanticObjectId
from bson import ObjectId
from pymongo.errors import PyMongoError

from bench.apis import bench_settings
from bench.embedded import database as embedded_database
from bench.harness import print_table, stack, write_results
from core.database import open_database
from devstack.run import index_readings
from graph.loaders import load_latest_readings
from ingest.rollups import (
    APPLY_SLICE,
    Accumulator,
    RollupDelta,
    RollupKey,
    Summary,
    from_millis,
    latest_update,
    rollup_id,
    rollup_update,
)
from ingest.store import insert_readings
from models.accounts import MemberRole, User, utcnow
from models.devices import Device
from models.readings import Reading
from models.rollups import ROLLUPS, Rollup, RollupPending
from services.device_search import DeviceFilter, find_devices
from services.exports import Export
from services.keyset import page_query, time_page
from services.reading_hours import keyed_since, newest_first
from services.readings import BUCKETS, raw_buckets
from services.rollups import aggregate_buckets

DEVICES = 50
ORGANIZATION = ObjectId()
CLIENTS = 20
# A scenario whose p99 passed this at a smaller size is timed once, by one client.
ALONE_AFTER_MS = 5_000
STEP = timedelta(minutes=1)
# The write path's shape being reproduced: readings stored in chunks of CHUNK, rollups
# applied every FLUSH_EVERY chunks (the worker: a batch of up to 1,000 readings, a flush
# every 2 s).
CHUNK = 1000
FLUSH_EVERY = 2
# Rollup documents per insert_many when seeding from memory. An hour's costs the
# stand-in 13 ms into a small collection, but at a million readings (7.5 GB resident)
# one insert_many of 500 outlasted the driver's 20 s socket timeout and ended the run.
ROLLUP_BATCH = 50


def reading_chunks(
    devices: list[ObjectId], total: int, already: int, now: datetime, chunk: int = CHUNK
) -> Iterator[list[dict[str, Any]]]:
    """The readings from the `already`th to the `total`th, in chunks: interleaved over
    the devices, each device's times going back from `now` a minute at a time."""
    rng = random.Random(total)
    batch: list[dict[str, Any]] = []
    for index in range(already, total):
        device = devices[index % len(devices)]
        step = index // len(devices)
        batch.append(
            {
                "_id": ObjectId(),
                "device_id": device,
                "timestamp": now - step * STEP - timedelta(seconds=rng.uniform(0, 50)),
                "values": [
                    {"metric": "temperature", "value": rng.uniform(15, 25), "unit": "°C"},
                    {"metric": "humidity", "value": rng.uniform(30, 60), "unit": "%"},
                ],
                "anomaly": False,
                "source": None,
            }
        )
        if len(batch) == chunk:
            yield batch
            batch = []
    if batch:
        yield batch


async def seed_through_write_path(chunks: Iterable[list[dict[str, Any]]]) -> None:
    """Store the chunks as the worker does: `insert_readings` a chunk at a time, the
    rollups gathered in an `Accumulator` and applied every FLUSH_EVERY chunks."""
    gather = Accumulator()
    for number, chunk in enumerate(chunks, 1):
        await insert_readings(chunk, chunk_size=len(chunk), gather=gather)
        if number % FLUSH_EVERY == 0:
            await gather.flush()
    await gather.flush()


def rollup_document(key: RollupKey, delta: RollupDelta, version: int) -> dict[str, Any]:
    """The rollup document `version` upserts (`rollup_update`) make from nothing, when
    `delta` is what they added up to."""
    device, metric, start = key
    count, low, high, total = delta.total
    return {
        "_id": rollup_id(device, metric, start),
        "start": from_millis(start),
        "count": count,
        "sum": total,
        "version": version,
        "parts": {
            f"k{offset}": {"count": c, "sum": s, "min": lo, "max": hi}
            for offset, (c, lo, hi, s) in delta.parts.items()
        },
        "min": low,
        "max": high,
        "device_id": device,
        "metric": metric,
    }


class Gathered(Accumulator):
    """An `Accumulator` that the seed empties itself instead of applying what it holds."""

    def take(self) -> tuple[Summary, list[ObjectId]]:
        """What was gathered since the last take: the merged summary, the markers."""
        taken = self._summary, self._markers
        self._summary, self._markers = Summary.empty(), []
        return taken


async def seed_from_memory(chunks: Iterable[list[dict[str, Any]]]) -> None:
    """Store the chunks leaving what `seed_through_write_path` leaves (readings, rollups,
    latest readings, no pending record), in a fraction of the stand-in's time.

    The readings are stored by the write path itself, `insert_readings` gathering
    their summaries (and pending records) as for the worker; at each flush the seed
    takes what was gathered, deletes the pending records, and keeps adding up the
    rollups in memory (`Summary.merge`, flush after flush: the float additions the
    upserts would have made, in the same order). Each new rollup document is inserted
    once at the end, with the version its upserts would have counted. Documents stored
    before (an earlier, smaller seed) get the write path's own upserts flush by flush,
    so that their sums are added up in the write path's order too.
    """
    stored = {
        kind: {doc["_id"] async for doc in kind.get_pymongo_collection().find({}, {"_id": 1})}
        for kind in ROLLUPS
    }
    gather = Gathered()
    new = Summary.empty()  # what the flushes added to documents not stored yet
    versions: dict[tuple[type[Rollup], RollupKey], int] = {}

    async def flush() -> None:
        gathered, markers = gather.take()
        fresh = Summary({kind: {} for kind in ROLLUPS}, gathered.latest)
        for kind, deltas in gathered.deltas.items():
            known = [
                rollup_update(key, delta)
                for key, delta in deltas.items()
                if rollup_id(*key) in stored[kind]
            ]
            for start in range(0, len(known), APPLY_SLICE):
                await kind.get_pymongo_collection().bulk_write(
                    known[start : start + APPLY_SLICE], ordered=False
                )
            for key, delta in deltas.items():
                if rollup_id(*key) not in stored[kind]:
                    fresh.deltas[kind][key] = delta
                    versions[kind, key] = versions.get((kind, key), 0) + 1
        new.merge(fresh)
        if markers:
            await RollupPending.get_pymongo_collection().delete_many({"_id": {"$in": markers}})

    for number, chunk in enumerate(chunks, 1):
        await insert_readings(chunk, chunk_size=len(chunk), gather=gather)
        if number % FLUSH_EVERY == 0:
            await flush()
    await flush()
    for kind, deltas in new.deltas.items():
        documents = [
            rollup_document(key, delta, versions[kind, key]) for key, delta in deltas.items()
        ]
        for start in range(0, len(documents), ROLLUP_BATCH):
            await kind.get_pymongo_collection().insert_many(
                documents[start : start + ROLLUP_BATCH], ordered=False
            )
    if new.latest:
        await Device.get_pymongo_collection().bulk_write(
            [latest_update(device, doc) for device, doc in new.latest.items()], ordered=False
        )


async def seed(devices: list[ObjectId], total: int, already: int) -> float:
    """Add readings until `total` are stored (bench/growth's layout); seconds it took."""
    started = time.monotonic()
    now = utcnow().replace(second=0, microsecond=0)
    await seed_from_memory(reading_chunks(devices, total, already, now))
    return time.monotonic() - started


async def measure(
    name: str, call: Callable[[], Awaitable[int]], seconds: float, clients: int = CLIENTS
) -> dict[str, Any]:
    """`clients` tasks calling `call` back to back for `seconds`; latency percentiles."""
    latencies: list[float] = []
    items = errors = 0
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal items, errors
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                # Awaited first: `items += await call()` reads `items` before the await,
                # and 20 clients overwrote each other's counts.
                got = await call()
            except PyMongoError:
                # The driver's timeouts (20 s socket, 5 s server selection): no answer.
                errors += 1
                continue
            items += got
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float | None:
        if not latencies:
            return None
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 1)

    return {
        "scenario": name,
        "clients": clients,
        "requests": len(latencies),
        "timeouts": errors,
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 1) if latencies else None,
        "items_per_s": round(items / elapsed, 1),
    }


async def drained() -> None:
    """Until the database answers a ping: requests the driver gave up on (timeouts)
    still occupy the stand-in, and must not be measured in the next scenario."""
    while True:
        try:
            await Device.get_pymongo_collection().database.command("ping")
            return
        except PyMongoError:
            await asyncio.sleep(1)


async def scenarios(
    devices: list[ObjectId], seconds: float, skip: set[str], alone: Collection[str] = ()
) -> list[dict[str, Any]]:
    """This branch's scenarios first, then main's (which may leave the stand-in busy).
    `skip`: not run; `alone`: one client, one request (see the module's docstring)."""
    device = devices[0]
    now = utcnow()
    unit, bin_size, length = BUCKETS["1h"]
    ids = [PydanticObjectId(d) for d in devices]
    calls: list[tuple[str, Callable[[], Awaitable[int]], int]] = []

    async def floor() -> int:
        # The database's own floor: one small document by _id, nothing of ours around it.
        return 1 if await Device.get_pymongo_collection().find_one({"_id": device}) else 0

    calls.append(("baseline: one device by _id", floor, CLIENTS))
    for days in (1, 30):
        start = now - timedelta(days=days)

        async def rolled(start: Any = start) -> int:
            found = await aggregate_buckets(
                device, "temperature", start, now, length=length, unit=unit, bin_size=bin_size
            )
            return len(found)

        calls.append((f"aggregate {days}d 1h, rollups", rolled, CLIENTS))

    # devices(first: 50) { latestReading }: the API's device page, one organization's.
    viewer = User(email="growth@bench.test", password_hash="")  # never signs in
    viewer.set_memberships({str(ORGANIZATION): MemberRole.OWNER})

    async def latest_documents() -> int:
        page = await find_devices(viewer, DeviceFilter(), first=50, after=None)
        return len([d for d in page.items if d.latest_reading is not None])

    calls.append(("latest of 50 devices, device page", latest_documents, CLIENTS))

    async def history() -> int:
        # services.readings.list_readings less the access check: hour by hour.
        found = await Device.get_pymongo_collection().find_one({"_id": device})
        newest = found["latest_reading"]["timestamp"] if found else None
        query = page_query({"device_id": device}, prefix="r:", start=None, end=None, after=None)
        return len(await newest_first(device, query, limit=51, newest=newest)) - 1

    calls.append(("history first page (50), by hour", history, CLIENTS))
    export = Export(device_id=device, start=now - timedelta(days=30), end=now, format="csv")

    async def export_month() -> int:
        rows = 0
        async for chunk in export.chunks():
            rows += chunk.count(b"\n")
        return rows - 1

    calls.append(("export 1 device's month (csv), rows/s", export_month, 1))
    for days in (1, 30):
        start = now - timedelta(days=days)

        async def raw(start: Any = start) -> int:
            return len(await raw_buckets(device, "temperature", start=start, end=now, bucket="1h"))

        calls.append((f"aggregate {days}d 1h, raw (main)", raw, CLIENTS))

    async def history_plain() -> int:
        page = await time_page(
            Reading,
            {"device_id": device},
            prefix="r:",
            start=None,
            end=None,
            first=50,
            after=None,
        )
        return len(page.items)

    calls.append(("history first page (50), plain (main)", history_plain, CLIENTS))

    async def latest_raw() -> int:
        return len([r for r in await load_latest_readings(ids) if r is not None])

    calls.append(("latest of 50 devices, raw (main)", latest_raw, CLIENTS))
    results = []
    for name, call, clients in calls:
        if name in skip:
            results.append({"scenario": name, "skipped": "no answer at a smaller size"})
            continue
        await drained()
        if name in alone:
            clients = 1
        print(f"growth:   {name} ...", flush=True)
        # The export: one client, one month, timed once.
        result = await measure(name, call, seconds if clients > 1 else 0.1, clients)
        if name in alone:
            result["alone"] = f"p99 over {ALONE_AFTER_MS} ms at a smaller size: one request"
        results.append(result)
    return results


@contextmanager
def chosen_database(name: str) -> Iterator[None]:
    """`stand-in` (the tests' mongoeco, started by bench.harness.stack), or `secantus`:
    `make run`'s SecantusDB (fsync per commit, as make run starts it) through
    MONGODB_URL, with the (device, time) index make run adds (devstack.run)."""
    if name == "stand-in":
        yield
        return
    beside = Path(sys.executable).with_name("secantusd-py")
    with (
        tempfile.TemporaryDirectory() as scratch,
        embedded_database("secantus-sync", Path(scratch), str(beside)) as url,
    ):
        previous = os.environ.get("MONGODB_URL")
        os.environ["MONGODB_URL"] = url
        try:
            yield
        finally:
            if previous is None:
                del os.environ["MONGODB_URL"]
            else:
                os.environ["MONGODB_URL"] = previous


async def add_devices(count: int) -> list[ObjectId]:
    """`count` devices with no readings yet; their ids."""
    devices = [ObjectId() for _ in range(count)]
    await Device.get_pymongo_collection().insert_many(
        [
            {
                "_id": d,
                "owner_id": ObjectId(),
                "organization_id": ORGANIZATION,
                "name": f"g-{n}",
                "type": "bench",
                "status": "ONLINE",
                "metrics": ["temperature", "humidity"],
                "mqtt_username": f"g-{d}",
                "mqtt_password_hash": "-",
            }
            for n, d in enumerate(devices)
        ]
    )
    return devices


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    sizes = [int(s) for s in args.sizes.split(",")]
    runs = []
    with chosen_database(args.database), stack() as running:
        if args.database == "secantus":
            index_readings(running.mongodb_url, running.database)
        async with open_database(bench_settings(running)):
            devices = await add_devices(DEVICES)
            await keyed_since()  # as the API does at start (a fresh database: the epoch)
            stored = 0
            skip: set[str] = set()
            alone: set[str] = set()
            for size in sizes:
                await drained()
                print(f"growth: seeding up to {size} readings ...", flush=True)
                seconds = await seed(devices, size, stored)
                stored = size
                print(f"growth: seeded in {seconds:.0f} s; measuring ...", flush=True)
                results = await scenarios(devices, args.seconds, skip, alone)
                skip |= {r["scenario"] for r in results if r.get("requests") == 0}
                alone |= {
                    r["scenario"]
                    for r in results
                    if (r.get("p99_ms") or 0) > ALONE_AFTER_MS or r.get("timeouts")
                }
                runs.append(
                    {"readings": size, "seed_seconds": round(seconds, 1), "scenarios": results}
                )
                report_size(runs[-1])
                # Written after every size: a larger one may not finish.
                write_results(result_name(args), summary(args, runs))
            await drained()  # main's abandoned requests, before the stand-in is stopped
    return summary(args, runs)


def result_name(args: argparse.Namespace) -> str:
    return "growth" if args.database == "stand-in" else f"growth-{args.database}"


def summary(args: argparse.Namespace, runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "database": args.database,
        "devices": DEVICES,
        "clients": CLIENTS,
        "seconds_per_scenario": args.seconds,
        "layout": "50 devices, one reading a minute each (2 metrics), ending now",
        "runs": runs,
    }


def report_size(run: dict[str, Any]) -> None:
    print_table(
        f"growth: {run['readings']} readings (seeded in {run['seed_seconds']} s)",
        ["scenario", "clients", "requests", "timeouts", "req/s", "p50 ms", "p99 ms", "items/s"],
        [
            [r["scenario"], "skipped", "", "", "", "", "", ""]
            if "skipped" in r
            else [
                r["scenario"],
                r["clients"],
                r["requests"],
                r["timeouts"],
                r["requests_per_s"],
                r["p50_ms"],
                r["p99_ms"],
                r["items_per_s"],
            ]
            for r in run["scenarios"]
        ],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--database", choices=("stand-in", "secantus"), default="stand-in")
    args = parser.parse_args(argv)
    results = asyncio.run(main_async(args))
    path = write_results(result_name(args), results)
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
