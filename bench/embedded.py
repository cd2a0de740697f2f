"""Embedded database benchmark: `python -m bench.embedded` (README, Embedded database).

Which database `make run` should start by default. Each candidate is started as its
own process, then driven back to back through the same real stack as `bench.ingest`
(Mosquitto -> worker -> database -> Redis -> a graphql-ws subscriber), in one run:

- the ladder: the highest offered rate stored as fast as it arrives (steps of
  `--ladder-seconds`; "kept up" = all stored within 2 s of the last publish);
- the live latency (publish -> subscriber) at `--rate` (the issue's 500 msg/s);
- with `--seed N`, N more readings over the fleet (a history of 10-second data; over
  its first K devices with `--seed-devices K`), timed;
- typical reads of what was stored, straight to the database: a device's first
  history page (newest 50) as one sorted query (the API's before issue 15's pages) and
  hour by hour (the API's now: services/reading_hours.py), and a one-hour,
  one-minute-bucket aggregate over raw readings, sequential, p50/p99.

Candidates (`--candidates`): `sqlite` (the old `make run`: mongoeco's wire server on
its SQLite engine, data in a file), `memory` (the same server in memory: what the tests
use, loses everything on restart), `secantus` (SecantusDB's `secantusd-py`, a
MongoDB-wire server on WiredTiger, data in a directory, with the (device, time) index
`make run` gives it; `--secantusd PATH`, else beside this Python or on PATH; skipped
when absent), `secantus-sync` (the same with `--sync-on-commit`: each commit fsyncs
its log). Each number is printed with the machine's load average beside it; writes
bench/results/NAME.json (`--name`, embedded).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bson import ObjectId
from pymongo import MongoClient
from pymongo.collection import Collection

from bench.apis import private_redis
from bench.harness import ROOT, free_port, print_table, stack, write_results
from bench.ingest import (
    Fleet,
    loads,
    make_fleet,
    provision,
    start_api,
    subscriber_latency,
    sustained_rate,
)
from devstack.run import index_readings
from models.readings import hour_key

READS = 20


def wait_uri(ready: Path, process: subprocess.Popen[bytes], timeout: float = 60) -> str:
    """The URI a stand-in writes once listening."""
    deadline = time.monotonic() + timeout
    while not (ready.exists() and ready.read_text()):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the database did not start")
        time.sleep(0.05)
    return ready.read_text().strip()


def wait_ping(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Until the server answers `ping`."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the database at {url} exited (code {process.returncode})")
        try:
            client: MongoClient[dict[str, Any]]
            with MongoClient(url, serverSelectionTimeoutMS=500) as client:
                client.admin.command("ping")
                return
        except Exception:  # not up yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@contextmanager
def database(candidate: str, directory: Path, secantusd: str | None) -> Iterator[str]:
    """Start one candidate in `directory`; yield its MongoDB URL; stop it after."""
    log = (directory / "server.log").open("wb")
    if candidate in ("sqlite", "memory"):
        ready = directory / "mongo.uri"
        argv = [sys.executable, "-m", "devstack.mongo_standin", "--port", "0"]
        argv += ["--ready-file", str(ready)]
        if candidate == "sqlite":
            argv += ["--data", str(directory / "mongo.sqlite")]
        process = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=log)
        url = None
        try:
            url = wait_uri(ready, process)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)
    elif candidate in ("secantus", "secantus-sync"):
        if secantusd is None:
            raise RuntimeError("secantusd-py not found")
        port = free_port()
        argv = [secantusd, "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--storage-path", str(directory / "secantus"), "--log-level", "WARNING"]
        if candidate == "secantus-sync":
            argv.append("--sync-on-commit")  # every commit fsyncs WiredTiger's log
        process = subprocess.Popen(argv, cwd=directory, stdout=log, stderr=log)
        url = f"mongodb://127.0.0.1:{port}/?directConnection=true"
        try:
            wait_ping(url, process)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)
    else:
        raise ValueError(f"unknown candidate {candidate!r}")


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2)

    return {"p50_ms": pct(0.5), "p99_ms": pct(0.99), "mean_ms": round(statistics.fmean(ordered), 2)}


def seed(
    url: str, database_name: str, fleet: Fleet, total: int, over: int | None = None
) -> dict[str, Any]:
    """`total` more readings over the fleet's first `over` devices (all by default),
    10 s apart per device, ending now, inserted 1,000 at a time (the shape the worker
    writes); how fast that went."""
    devices = [ObjectId(d) for d in fleet.device_ids[:over]]
    per_device = total // len(devices)
    start = datetime.now(UTC) - timedelta(seconds=10 * per_device)
    client: MongoClient[dict[str, Any]]
    with MongoClient(url) as client:
        readings: Collection[dict[str, Any]] = client[database_name]["readings"]
        started = time.monotonic()
        batch: list[dict[str, Any]] = []
        for k in range(per_device):
            for device in devices:
                at = start + timedelta(seconds=10 * k)
                batch.append(
                    {
                        "device_id": device,
                        "timestamp": at,
                        "values": [{"metric": "n", "value": float(k)}],
                        "anomaly": False,
                        "source": f"seed-{device}-{k}",
                        "hour": hour_key(device, at),  # as the write path stores it
                    }
                )
                if len(batch) == 1000:
                    readings.insert_many(batch, ordered=False)
                    batch = []
        if batch:
            readings.insert_many(batch, ordered=False)
        seconds = time.monotonic() - started
    inserted = per_device * len(devices)
    return {
        "readings": inserted,
        "devices": len(devices),
        "seconds": round(seconds, 1),
        "per_s": round(inserted / seconds),
    }


def reads(url: str, database_name: str, fleet: Fleet) -> dict[str, Any]:
    """A device's first history page and a one-hour aggregate, timed one after another."""
    device = ObjectId(fleet.device_ids[0])
    end = datetime.now(UTC) + timedelta(minutes=1)
    hour = {"$gte": end - timedelta(hours=1), "$lt": end}
    pipeline: list[dict[str, Any]] = [
        {
            "$match": {
                "device_id": device,
                "timestamp": hour,
            }
        },
        {"$unwind": "$values"},
        {"$match": {"values.metric": "n"}},
        {
            "$group": {
                "_id": {"$dateTrunc": {"date": "$timestamp", "unit": "minute", "binSize": 1}},
                "count": {"$sum": 1},
                "min": {"$min": "$values.value"},
                "max": {"$max": "$values.value"},
                "avg": {"$avg": "$values.value"},
            }
        },
        {"$sort": {"_id": 1}},
    ]
    client: MongoClient[dict[str, Any]]
    with MongoClient(url) as client:
        readings: Collection[dict[str, Any]] = client[database_name]["readings"]
        stored = readings.count_documents({"device_id": device})
        page_ms, hour_page_ms, aggregate_ms = [], [], []
        page_rows = hour_rows = buckets = 0
        order = [("timestamp", -1), ("_id", -1)]
        for _ in range(READS):
            started = time.perf_counter()
            page = list(readings.find({"device_id": device}).sort(order).limit(50))
            page_ms.append((time.perf_counter() - started) * 1000)
            page_rows = len(page)
        newest = readings.find_one({"device_id": device}, sort=order)
        for _ in range(READS):
            # The API's page since issue 15 (services/reading_hours.newest_first): the
            # newest hour first by its key, the hour before while the page is short.
            started = time.perf_counter()
            found: list[dict[str, Any]] = []
            top = newest["timestamp"].replace(tzinfo=UTC) if newest else end
            top = top.replace(minute=0, second=0, microsecond=0)
            for _step in range(3):
                query = {
                    "hour": hour_key(device, top),
                    "device_id": device,
                    "timestamp": {"$gte": top, "$lt": top + timedelta(hours=1)},
                }
                found += readings.find(query).sort(order).limit(51 - len(found))
                if len(found) > 50:
                    break
                top -= timedelta(hours=1)
            hour_page_ms.append((time.perf_counter() - started) * 1000)
            hour_rows = min(len(found), 50)
        for _ in range(READS):
            started = time.perf_counter()
            buckets = len(list(readings.aggregate(pipeline)))
            aggregate_ms.append((time.perf_counter() - started) * 1000)
    return {
        "device_readings": stored,
        "history_page": {"rows": page_rows, **percentiles(page_ms)},
        "history_page_by_hour": {"rows": hour_rows, **percentiles(hour_page_ms)},
        "aggregate_1h_by_minute": {"buckets": buckets, **percentiles(aggregate_ms)},
    }


def stop_leftovers() -> None:
    """Terminate a worker (our child) that outlived its stop after a timed-out
    measurement; by pid, nothing else."""
    own = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        command = (stat.parent / "cmdline").read_bytes() if fields[1] == own else b""
        if b"bench.worker_process" in command:
            pid = int(stat.parent.name)
            print(f"stopping leftover child {pid}", flush=True)
            os.kill(pid, signal.SIGTERM)


def measure(candidate: str, args: argparse.Namespace, secantusd: str | None) -> dict[str, Any]:
    """One candidate: its server, then ladder, live latency and reads through one stack."""
    result: dict[str, Any] = {"candidate": candidate, "load_avg_start": loads()}
    with tempfile.TemporaryDirectory(prefix=f"embedded-{candidate}-") as scratch:
        with database(candidate, Path(scratch), secantusd) as url:
            os.environ["MONGODB_URL"] = url
            try:
                with stack() as running:
                    asyncio.run(provision(running))
                    api, api_url = start_api(running)
                    try:
                        fleet = asyncio.run(make_fleet(running, api_url, args.devices))
                        if candidate.startswith("secantus"):  # as `make run` does
                            index_readings(url, running.database)
                        rates = [float(r) for r in args.ladder.split(",")]
                        ladder = sustained_rate(running, fleet, rates, args.ladder_seconds)
                        ladder["load_avg"] = loads()
                        kept = [s["offered_rate"] for s in ladder["steps"] if s["kept_up"]]
                        ladder["highest_kept_up"] = max(kept) if kept else None
                        result["ladder"] = ladder
                        print(json.dumps({candidate: ladder}), flush=True)
                        count = int(args.rate * args.latency_seconds)
                        try:
                            latency = asyncio.run(
                                subscriber_latency(api_url, fleet, running, args.rate, count)
                            )
                        except (TimeoutError, subprocess.TimeoutExpired) as err:
                            latency = {
                                "rate": args.rate,
                                "failed": f"{count} events not delivered within "
                                f"{count / args.rate + 30:.0f} s ({type(err).__name__})",
                            }
                        latency["load_avg"] = loads()
                        result["latency"] = latency
                        print(json.dumps({candidate: latency}), flush=True)
                        if args.seed:
                            result["seed"] = seed(
                                url, running.database, fleet, args.seed, args.seed_devices
                            )
                            print(json.dumps({candidate: result["seed"]}), flush=True)
                        result["reads"] = reads(url, running.database, fleet)
                        result["reads"]["load_avg"] = loads()
                        print(json.dumps({candidate: result["reads"]}), flush=True)
                    finally:
                        api.terminate()
                        api.wait(timeout=15)
            finally:
                del os.environ["MONGODB_URL"]
                stop_leftovers()
        size = sum(p.stat().st_size for p in Path(scratch).rglob("*") if p.is_file())
        result["data_bytes"] = size
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="Embedded database candidates for make run")
    parser.add_argument("--candidates", default="sqlite,memory,secantus,secantus-sync")
    parser.add_argument("--name", default="embedded", help="bench/results/NAME.json")
    beside = Path(sys.executable).with_name("secantusd-py")
    parser.add_argument(
        "--secantusd", default=str(beside) if beside.is_file() else shutil.which("secantusd-py")
    )
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--rate", type=float, default=500, help="the live latency's rate")
    parser.add_argument("--latency-seconds", type=float, default=6)
    parser.add_argument("--ladder", default="100,250,500,1000,2000")
    parser.add_argument("--ladder-seconds", type=float, default=5)
    parser.add_argument(
        "--seed", type=int, default=0, help="readings added over the fleet before the reads"
    )
    parser.add_argument(
        "--seed-devices", type=int, default=None, help="over this many devices (the first)"
    )
    args = parser.parse_args()
    if "MONGODB_URL" in os.environ:
        parser.error("each candidate is started here: unset MONGODB_URL")
    results = []
    with private_redis() as redis_url:
        os.environ["REDIS_URL"] = redis_url  # what bench.harness.stack() hands the processes
        for candidate in args.candidates.split(","):
            if candidate.startswith("secantus") and not args.secantusd:
                print("secantus: skipped (no secantusd-py; --secantusd PATH)", flush=True)
                continue
            results.append(measure(candidate, args, args.secantusd))
    rows = []
    for r in results:
        latency, ladder, read = r.get("latency", {}), r.get("ladder", {}), r.get("reads", {})
        rows.append(
            [
                r["candidate"],
                ladder.get("highest_kept_up"),
                ladder.get("lost"),
                ladder.get("load_avg", ["-"])[0],
                latency.get("p50_ms", latency.get("failed", "-")),
                latency.get("p99_ms", "-"),
                latency.get("load_avg", ["-"])[0],
                read.get("history_page", {}).get("p99_ms"),
                read.get("history_page_by_hour", {}).get("p99_ms"),
                read.get("aggregate_1h_by_minute", {}).get("p99_ms"),
                read.get("device_readings"),
                read.get("load_avg", ["-"])[0],
                round(r["data_bytes"] / 1e6, 1),
            ]
        )
    print_table(
        f"Embedded candidates ({args.devices} devices, QoS 1, {args.ladder_seconds:.0f} s steps)",
        [
            "candidate",
            "kept up msg/s",
            "lost",
            "load",
            f"live p50 ms @{args.rate:.0f}",
            "live p99 ms",
            "load",
            "page p99 ms",
            "by hour",
            "aggregate p99 ms",
            "device readings",
            "load",
            "data MB",
        ],
        rows,
    )
    settings = {k: v for k, v in vars(args).items() if k != "secantusd"}
    print(f"\nwritten: {write_results(args.name, {'settings': settings, 'candidates': results})}")


if __name__ == "__main__":
    main()
