"""HTTP telemetry benchmark: `python -m bench.http_ingest` (docs/performance.md).

One API process (`python -m api`), devices POSTing batches of readings to
`/devices/{id}/telemetry` with their device tokens:

1. steady: an offered rate the stand-in stores as fast as it arrives -> latency;
   steady-small: the same with small batches (storage into the stand-in costs per
   reading, so a batch's latency is mostly its insert);
2. capacity: clients sending back to back (one request in flight each) -> the most
   readings/s stored, and latency at that load;
3. flood: one device sending three times its per-device limit -> 202 within the limit,
   429 with Retry-After beyond it;
4. overload: an offered rate above what storage keeps up with -> only 202 and 503
   (each with Retry-After), and every reading answered 202 is counted in the database;
5. storage alone, the baseline: the same batches inserted straight into the database
   with the API stopped -> the most readings/s the database takes in this shape.

Real Mosquitto (the API administers it), Redis, the MongoDB stand-in (or MONGODB_URL);
prints tables and writes bench/results/http_ingest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from beanie import PydanticObjectId

from bench.apis import bench_settings
from bench.harness import Stack, cpu_seconds, print_table, stack, write_results
from bench.http_load import KeepAlive
from bench.ingest import count_readings, loads, make_fleet, start_api
from core.database import open_database
from core.settings import Settings
from models.readings import MetricValue, Reading
from services.tokens import issue_device_token

PHASES = ("steady", "steady-small", "capacity", "flood", "overload")


@dataclass
class Outcomes:
    """What one phase's requests were answered."""

    latencies: list[float] = field(default_factory=list)  # of 202 answers
    refusal_latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    accepted: int = 0  # readings answered 202
    refused_without_retry_after: int = 0
    not_sent: int = 0  # the generator had no free connection when a request was due

    def record(self, head: bytes, body: bytes, latency: float) -> None:
        status = head.split(b" ", 2)[1].decode()
        self.statuses[status] += 1
        if status == "202":
            self.latencies.append(latency)
            self.accepted += int(json.loads(body)["accepted"])
            return
        self.refusal_latencies.append(latency)
        if status in ("429", "503") and b"\r\nretry-after:" not in head.lower():
            self.refused_without_retry_after += 1
        try:
            self.errors[f"{status} {json.loads(body).get('error')}"] += 1
        except ValueError:
            self.errors[f"{status} (not JSON)"] += 1

    def summary(self, elapsed: float) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        refusals = sorted(self.refusal_latencies)

        def pick(values: list[float], q: float) -> float | None:
            if not values:
                return None
            return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1)

        return {
            "requests": sum(self.statuses.values()),
            "statuses": dict(sorted(self.statuses.items())),
            "errors": dict(sorted(self.errors.items())),
            "readings_accepted": self.accepted,
            "readings_accepted_per_s": round(self.accepted / elapsed, 1),
            "refused_without_retry_after": self.refused_without_retry_after,
            "not_sent": self.not_sent,
            # Of the 202 answers: POST sent -> answer, readings stored.
            "p50_ms": pick(ordered, 0.50),
            "p99_ms": pick(ordered, 0.99),
            "max_ms": pick(ordered, 1.0),
            "refusal_p50_ms": pick(refusals, 0.50),
            "refusal_p99_ms": pick(refusals, 0.99),
            "seconds": round(elapsed, 1),
        }


class Recorder(KeepAlive):
    """KeepAlive that also keeps the head of the last answer (status, Retry-After), and
    knows when the server closed it (uvicorn closes connections idle for 5 s)."""

    head = b""
    closed = False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        end = (bytes(self.buffer) + data).find(b"\r\n\r\n")
        if end >= 0:
            self.head = (bytes(self.buffer) + data)[:end]
        super().data_received(data)


def request_bytes(url: str, device_id: str, token: str, body: bytes) -> bytes:
    host = urlsplit(url).netloc
    return (
        f"POST /devices/{device_id}/telemetry HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def batch_body(readings: int) -> bytes:
    # No timestamp: the time of arrival, as most devices send.
    return json.dumps(
        [{"temperature": 20 + (i % 10) / 10, "humidity": 40 + i % 7} for i in range(readings)]
    ).encode()


async def connect(url: str, count: int) -> list[Recorder]:
    loop = asyncio.get_running_loop()
    parts = urlsplit(url)
    protocols = []
    for _ in range(count):
        _, protocol = await loop.create_connection(
            Recorder, parts.hostname or "127.0.0.1", parts.port or 80
        )
        protocols.append(protocol)
    return protocols


def close(protocols: list[Recorder]) -> None:
    for protocol in protocols:
        if protocol.transport is not None:
            protocol.transport.close()


async def exchange(url: str, protocol: Recorder, request: bytes, outcomes: Outcomes) -> Recorder:
    """One request and its answer recorded; the connection to use next."""
    if protocol.closed:
        (protocol,) = await connect(url, 1)
    started = time.perf_counter()
    try:
        body = await protocol.post(request)
    except ConnectionError:
        outcomes.statuses["connection lost"] += 1  # counted, never silently retried
        return protocol
    outcomes.record(protocol.head, body, time.perf_counter() - started)
    return protocol


async def closed_loop(url: str, requests: list[bytes], seconds: float) -> dict[str, Any]:
    """One connection per request kind (device), each sending back to back."""
    protocols = await connect(url, len(requests))
    outcomes = Outcomes()
    deadline = time.perf_counter() + seconds

    async def client(index: int, request: bytes) -> None:
        while time.perf_counter() < deadline:
            protocols[index] = await exchange(url, protocols[index], request, outcomes)

    started = time.perf_counter()
    try:
        await asyncio.gather(*(client(i, r) for i, r in enumerate(requests)))
    finally:
        close(protocols)
    return outcomes.summary(time.perf_counter() - started)


async def open_loop(
    url: str,
    requests: list[bytes],
    rate: float,
    seconds: float,
    *,
    connections: int,
) -> dict[str, Any]:
    """`rate` requests/s round-robin over `requests`, whatever the answers take (each on
    a free connection of `connections`)."""
    # First in, first out: every connection stays in use (an idle one is closed).
    idle = deque(await connect(url, connections))
    outcomes = Outcomes()
    pending: set[asyncio.Task[None]] = set()

    async def one(protocol: Recorder, request: bytes) -> None:
        try:
            protocol = await exchange(url, protocol, request, outcomes)
        finally:
            idle.append(protocol)

    started = time.perf_counter()
    try:
        for number in range(int(rate * seconds)):
            delay = started + number / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if not idle:
                outcomes.not_sent += 1
                continue
            task = asyncio.create_task(one(idle.popleft(), requests[number % len(requests)]))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
    finally:
        close(list(idle))
    return outcomes.summary(time.perf_counter() - started)


async def storage_alone(
    running: Stack, device_ids: list[str], readings: int, clients: int, seconds: float
) -> dict[str, Any]:
    """The baseline, in the same run: `clients` tasks each inserting batches of
    `readings` readings straight into the readings collection (Beanie `insert_many`,
    as the store does), back to back, with no HTTP, no API and no checks: the most the
    database takes in this shape."""
    stored = 0
    clock = datetime(2020, 1, 1, tzinfo=UTC)

    async def client(n: int) -> None:
        nonlocal stored
        device = PydanticObjectId(device_ids[n % len(device_ids)])
        batch = 0
        while time.monotonic() < deadline:
            first = clock + timedelta(days=n, seconds=batch * readings)
            await Reading.insert_many(
                [
                    Reading(
                        device_id=device,
                        timestamp=first + timedelta(seconds=k),
                        values=[MetricValue(metric="temperature", value=20.0 + k % 7)],
                    )
                    for k in range(readings)
                ]
            )
            stored += readings
            batch += 1

    async with open_database(bench_settings(running)):
        started = time.monotonic()
        deadline = started + seconds
        await asyncio.gather(*(client(n) for n in range(clients)))
        elapsed = time.monotonic() - started
    return {"clients": clients, "readings": stored, "readings_per_s": round(stored / elapsed, 1)}


def settle(running: Stack, timeout: float = 30) -> int:
    """The readings count once it stops moving (a batch answered 503 may still land)."""
    last, deadline = -1, time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = count_readings(running)
        if current == last:
            return current
        last = current
        time.sleep(1.0)
    return last


def main() -> None:
    parser = argparse.ArgumentParser(description="HTTP telemetry benchmark")
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--readings", type=int, default=100, help="readings per POST")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--steady-rate", type=float, default=5, help="POSTs/s, steady phase")
    parser.add_argument("--clients", type=int, default=8, help="closed-loop clients")
    parser.add_argument("--small-readings", type=int, default=10, help="steady-small batch")
    parser.add_argument("--small-rate", type=float, default=10, help="POSTs/s, steady-small")
    parser.add_argument("--overload-rate", type=float, default=40, help="POSTs/s, overload")
    parser.add_argument(
        "--flood-rate", type=float, default=60, help="POSTs/s of one device (limit: 20/s)"
    )
    args = parser.parse_args()
    with stack() as running:
        api, url = start_api(running)
        try:
            fleet = asyncio.run(make_fleet(running, url, args.devices + 1))
            # The API runs with development defaults: its JWT secret signs these.
            signer = Settings(_env_file=None)
            tokens = {d: issue_device_token(d, 1, signer).token for d in fleet.device_ids}
            *devices, flooder = fleet.device_ids
            body = batch_body(args.readings)
            requests = [request_bytes(url, d, tokens[d], body) for d in devices]
            capacity = [requests[i % len(requests)] for i in range(args.clients)]
            flood = request_bytes(url, flooder, tokens[flooder], batch_body(1))
            small_body = batch_body(args.small_readings)
            small = [request_bytes(url, d, tokens[d], small_body) for d in devices]
            results: dict[str, Any] = {
                "devices": args.devices,
                "readings_per_post": args.readings,
                "small_readings_per_post": args.small_readings,
                "rates_per_s": {
                    "steady": args.steady_rate,
                    "steady-small": args.small_rate,
                    "flood": args.flood_rate,
                    "overload": args.overload_rate,
                },
                "capacity_clients": args.clients,
                "api_settings": "defaults (INGEST_DEVICE_RATE_PER_SECOND 20, burst 100; "
                "HTTP_INGEST_CONCURRENCY 64; HTTP_INGEST_TIMEOUT_SECONDS 5; "
                "INGEST_BATCH_SIZE 100)",
            }
            asyncio.run(closed_loop(url, requests[:4], 2))  # warm-up: devices read, ONLINE
            phases: list[tuple[str, Any]] = [
                (
                    "steady",
                    lambda: open_loop(
                        url, requests, args.steady_rate, args.seconds, connections=32
                    ),
                ),
                (
                    "steady-small",
                    lambda: open_loop(url, small, args.small_rate, args.seconds, connections=32),
                ),
                (
                    "capacity",
                    lambda: closed_loop(url, capacity, args.seconds),
                ),
                (
                    "flood",
                    lambda: open_loop(url, [flood], args.flood_rate, args.seconds, connections=32),
                ),
                (
                    "overload",
                    lambda: open_loop(
                        url, requests, args.overload_rate, args.seconds, connections=256
                    ),
                ),
            ]
            for name, phase in phases:
                before_count = settle(running)
                before_cpu = cpu_seconds(api.pid)
                row = asyncio.run(phase())
                row["api_cpu_s"] = round(cpu_seconds(api.pid) - before_cpu, 2)
                answered = max(row["requests"], 1)
                row["api_cpu_ms_per_request"] = round(row["api_cpu_s"] * 1000 / answered, 2)
                after_count = settle(running)
                row["stored_in_database"] = after_count - before_count
                row["every_202_stored"] = row["stored_in_database"] >= row["readings_accepted"]
                row["stored_beyond_202"] = row["stored_in_database"] - row["readings_accepted"]
                row["load_avg"] = loads()
                results[name] = row
                print(name, json.dumps(row), flush=True)
        finally:
            api.terminate()
            api.wait(timeout=15)
        # Last, with the API stopped: its readings are not the API's, no phase counts them.
        results["storage_alone"] = asyncio.run(
            storage_alone(running, devices, args.readings, args.clients, args.seconds)
        )
        print("storage alone", json.dumps(results["storage_alone"]), flush=True)
    path = write_results("http_ingest", results)
    print_table(
        f"POST /devices/{{id}}/telemetry, {args.readings} readings per POST, one API process",
        [
            "phase",
            "requests",
            "answers",
            "readings/s (202)",
            "p50 ms",
            "p99 ms",
            "202'd stored",
            "refusals w/o Retry-After",
            "API CPU ms/request",
            "load",
        ],
        [
            [
                name,
                results[name]["requests"],
                " ".join(f"{k}:{v}" for k, v in results[name]["statuses"].items()),
                results[name]["readings_accepted_per_s"],
                results[name]["p50_ms"],
                results[name]["p99_ms"],
                f"{results[name]['stored_in_database']}/{results[name]['readings_accepted']}",
                results[name]["refused_without_retry_after"],
                results[name]["api_cpu_ms_per_request"],
                results[name]["load_avg"][0],
            ]
            for name in PHASES
        ],
    )
    alone = results["storage_alone"]
    print(
        f"\nstorage alone (insert_many, {args.clients} clients x {args.readings} readings, "
        f"no HTTP): {alone['readings_per_s']} readings/s; the HTTP capacity phase reached "
        f"{results['capacity']['readings_accepted_per_s'] / alone['readings_per_s']:.0%} of it"
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
