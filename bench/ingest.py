"""Ingest benchmark: `python -m bench.ingest` (see README, Performance).

1. Worker CPU per message, ours vs a naive baseline, at the same offered rate.
2. Publish -> GraphQL subscriber latency (legacy graphql-ws) at a steady rate.
3. The highest rate stored completely while it is offered, and where the time goes.

Real Mosquitto, real Redis, the MongoDB stand-in (or MONGODB_URL); prints tables
and writes bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from beanie import PydanticObjectId
from paho.mqtt.enums import CallbackAPIVersion
from pymongo import MongoClient
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bench.harness import ROOT, Stack, cpu_seconds, free_port, print_table, stack, write_results
from bench.worker_process import READY
from core.database import open_database
from core.dynsec import connect_dynsec
from core.settings import Settings
from ingest.worker import TOPICS
from models.devices import Device

READING_ADDED = "subscription { readingAdded { deviceId values { metric value } } }"
WORKER_PASSWORD = secrets.token_urlsafe(16)
PUBLISHER_PASSWORD = secrets.token_urlsafe(16)
# Workers that only receive and count (the MQTT clients' floors).
RECEIVE_ONLY = ("bare", "lean")


@dataclass
class Fleet:
    device_ids: list[str]
    token: str  # an access token of the devices' owner


def base_environment(stack: Stack, **extra: str) -> dict[str, str]:
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    env.update(
        MONGODB_URL=stack.mongodb_url,
        MONGODB_DATABASE=stack.database,
        REDIS_URL=stack.redis_url,
        MQTT_HOST="127.0.0.1",
        MQTT_PORT=str(stack.mqtt_port),
        LOG_LEVEL="WARNING",
        ENVIRONMENT="development",
        ARGON2_TIME_COST="1",
        ARGON2_MEMORY_COST_KIB="64",
    )
    env.update(extra)
    return env


async def provision(stack: Stack) -> None:
    """Broker identities for the workers and the load generator."""
    patterns = [p for topic in TOPICS for p in (topic, f"$share/+/{topic}")]
    async with connect_dynsec(
        "127.0.0.1", stack.mqtt_port, username="bench-admin", password=stack.admin_password
    ) as dynsec:
        await dynsec.execute(
            {"command": "createRole", "rolename": "worker"},
            *[
                {
                    "command": "addRoleACL",
                    "rolename": "worker",
                    "acltype": "subscribePattern",
                    "topic": p,
                    "allow": True,
                }
                for p in patterns
            ],
            # The API's reconcile makes receiving deny-by-default: the role must allow it.
            *[
                {
                    "command": "addRoleACL",
                    "rolename": "worker",
                    "acltype": "publishClientReceive",
                    "topic": topic,
                    "allow": True,
                }
                for topic in TOPICS
            ],
            {
                "command": "createClient",
                "username": "bench-worker",
                "password": WORKER_PASSWORD,
                "roles": [{"rolename": "worker"}],
            },
            {"command": "createRole", "rolename": "load"},
            {
                "command": "addRoleACL",
                "rolename": "load",
                "acltype": "publishClientSend",
                "topic": "devices/#",
                "allow": True,
            },
            {
                "command": "createClient",
                "username": "bench-load",
                "password": PUBLISHER_PASSWORD,
                "roles": [{"rolename": "load"}],
            },
        )


def start_api(stack: Stack) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "api"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        env=base_environment(
            stack,
            API_PORT=str(port),
            MQTT_USERNAME="bench-admin",
            MQTT_PASSWORD=stack.admin_password,
            # Every run registers an owner; rate-limit counters outlive runs in Redis.
            REGISTRATIONS_PER_ADDRESS="1000000",
        ),
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)  # noqa: S310 - local
            break
        except OSError:
            time.sleep(0.05)
    return process, url


def graphql(url: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 - local
        f"{url}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return json.loads(response.read())  # type: ignore[no-any-return]


REGISTER = (
    "mutation($e: String!, $p: String!) { register(input: {email: $e, password: $p}) "
    "{ accessToken user { id } } }"
)


async def make_fleet(stack: Stack, api_url: str, devices: int) -> Fleet:
    """One registered owner and its devices (written directly: the broker ACLs are not measured).

    The owner is a plain USER: the first account (ADMIN) would watch `readings:all`, and
    Redis pub/sub channels are server-wide, so every test running on this Redis would
    reach the subscriber too.
    """
    # Addresses of their own: registrations per e-mail are rate-limited, and the
    # counters outlive a run in Redis.
    run, password = secrets.token_hex(4), "benchmark-password"
    graphql(api_url, REGISTER, {"e": f"bench-admin-{run}@example.com", "p": password})
    answer = graphql(api_url, REGISTER, {"e": f"bench-{run}@example.com", "p": password})
    if answer.get("errors"):
        raise RuntimeError(f"registering the fleet's owner failed: {answer['errors']}")
    registered = answer["data"]["register"]
    owner = PydanticObjectId(registered["user"]["id"])
    settings = Settings(mongodb_url=stack.mongodb_url, mongodb_database=stack.database)
    async with open_database(settings):
        documents = [
            Device(
                id=PydanticObjectId(),
                owner_id=owner,
                name=f"bench-{i}",
                type="bench",
                mqtt_username=f"bench-{i}",
                mqtt_password_hash="-",  # noqa: S106 - never used: bench-load publishes
            )
            for i in range(devices)
        ]
        for start in range(0, len(documents), 100):
            await Device.insert_many(documents[start : start + 100])
        return Fleet([str(d.id) for d in documents], registered["accessToken"])


def start_worker(stack: Stack, kind: str, client_id: str) -> subprocess.Popen[bytes]:
    """A worker process, subscribed; `kind` may name its event loop: "ours:uvloop"."""
    kind, _, loop = kind.partition(":")
    env = base_environment(
        stack,
        MQTT_USERNAME="bench-worker",
        MQTT_PASSWORD=WORKER_PASSWORD,
        INGEST_CLIENT_ID=client_id,
        INGEST_SHARE_GROUP=client_id,
        # The fleet sends faster per device than the default limit; the check still runs.
        INGEST_DEVICE_RATE_PER_SECOND="1000000",
        BENCH_LOOP=loop or "asyncio",
    )
    profile = os.environ.get("BENCH_PROFILE")  # a path: profile the worker with cProfile
    command = [sys.executable, "-m", "bench.worker_process", kind]
    if profile:
        command[1:1] = ["-m", "cProfile", "-o", f"{profile}.{kind}"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE)
    # Subscribed before the load starts: a message published earlier would be lost.
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while (line := process.stdout.readline()) and line.strip() != READY.encode():
        if time.monotonic() > deadline:
            break
    if not line:
        raise RuntimeError(f"worker {kind} exited before subscribing")
    return process


def stop_worker(process: subprocess.Popen[bytes]) -> dict[str, Any]:
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=30)
    lines = out.decode().strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


class Load:
    """Publishes QoS 1 telemetry at a steady rate over the fleet, from a thread."""

    def __init__(self, stack: Stack, fleet: Fleet) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-load")
        self.client.username_pw_set("bench-load", PUBLISHER_PASSWORD)
        self.client.max_inflight_messages_set(1000)
        self.client.connect("127.0.0.1", stack.mqtt_port)
        self.client.loop_start()
        self.fleet = fleet

    def run(self, rate: float, count: int) -> float:
        """Publish `count` messages at `rate`/s; return the achieved rate."""
        devices = self.fleet.device_ids
        started = time.perf_counter()
        for number in range(count):
            due = started + number / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            payload = json.dumps({"sent": time.time(), "n": number})
            self.client.publish(f"devices/{devices[number % len(devices)]}/telemetry", payload, 1)
        return count / (time.perf_counter() - started)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def count_readings(stack: Stack) -> int:
    """The readings stored: the `count` command (collection metadata on MongoDB, exact
    for the whole collection). The stand-in refuses `count_documents({})` (an
    aggregation) once the collection outgrows its materialization budget."""
    client: MongoClient[dict[str, Any]]
    with MongoClient(stack.mongodb_url) as client:
        return client[stack.database]["readings"].estimated_document_count()


def wait_stored(stack: Stack, target: int, timeout: float) -> float | None:
    """Seconds until `target` readings are stored, or None if not within `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if count_readings(stack) >= target:
            return time.monotonic() - started
        time.sleep(0.1)
    return None


def cpu_per_message(
    stack: Stack, fleet: Fleet, kind: str, rate: float, count: int
) -> dict[str, Any]:
    before_total = count_readings(stack)
    worker = start_worker(stack, kind, f"bench-{kind.replace(':', '-')}-{secrets.token_hex(3)}")
    load = Load(stack, fleet)
    cpu_before = cpu_seconds(worker.pid)
    started = time.monotonic()
    achieved = load.run(rate, count)
    if kind.partition(":")[0] in RECEIVE_ONLY:  # stores nothing: a moment to read the last
        time.sleep(1.0)
        drained: float | None = 1.0
    else:
        drained = wait_stored(stack, before_total + count, timeout=300)
    elapsed = time.monotonic() - started
    cpu = cpu_seconds(worker.pid) - cpu_before
    load.close()
    report = stop_worker(worker)
    stored = (
        report.get("received", 0) if "received" in report else count_readings(stack) - before_total
    )
    return {
        "worker": kind,
        "offered_rate": rate,
        "achieved_rate": round(achieved, 1),
        "messages": count,
        "stored": stored,
        "complete": drained is not None,
        "elapsed_s": round(elapsed, 2),
        "cpu_s": round(cpu, 3),
        "cpu_us_per_message": round(cpu / count * 1e6, 1),
        "worker_report": report,
    }


async def subscriber_latency(
    api_url: str, fleet: Fleet, stack: Stack, rate: float, count: int
) -> dict[str, Any]:
    """Latency from publish to a legacy graphql-ws subscriber of readingAdded, in steady
    state: one message per device first (the worker's first sight of a device reads it
    from MongoDB and marks it ONLINE), then `count` messages at `rate`, measured."""
    worker = start_worker(stack, "ours", f"bench-latency-{secrets.token_hex(3)}")
    ws_url = api_url.replace("http://", "ws://") + "/graphql"
    try:
        async with connect(ws_url, subprotocols=["graphql-ws"]) as ws:  # type: ignore[list-item]
            init = {"authorization": f"Bearer {fleet.token}"}
            await ws.send(json.dumps({"type": "connection_init", "payload": init}))
            start = {"id": "1", "type": "start", "payload": {"query": READING_ADDED}}
            await ws.send(json.dumps(start))
            await asyncio.sleep(0.5)
            load = Load(stack, fleet)
            latencies: list[float] = []
            closed: str | None = None
            try:
                devices = len(fleet.device_ids)
                await _received(ws, load, min(rate, 200), devices, [])
                await _received(ws, load, rate, count, latencies)
            except ConnectionClosed as err:
                # The API closes a subscriber SUBSCRIPTION_BUFFER events behind (1013).
                closed = (
                    f"{err.rcvd.code if err.rcvd else '?'} {err.rcvd.reason if err.rcvd else err}"
                )
            finally:
                load.close()
    finally:
        stop_worker(worker)
    latencies.sort()
    events = len(latencies)
    if not latencies:
        latencies.append(float("nan"))

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 2)

    return {
        "rate": rate,
        "devices": len(fleet.device_ids),
        "events": events,
        "closed_by_api": closed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": round(latencies[-1], 2),
        "mean_ms": round(statistics.fmean(latencies), 2),
    }


async def _received(ws: Any, load: Load, rate: float, count: int, latencies: list[float]) -> None:
    """Publish `count` messages at `rate`; each one's publish -> subscriber latency, ms."""
    publishing = asyncio.get_running_loop().run_in_executor(None, load.run, rate, count)
    async with asyncio.timeout(count / rate + 30):
        while len(latencies) < count:
            message = json.loads(await ws.recv())
            if message.get("type") != "data":
                continue
            received = time.time()
            values = message["payload"]["data"]["readingAdded"]["values"]
            sent = next((v["value"] for v in values if v["metric"] == "sent"), None)
            if sent is None:
                raise RuntimeError(f"an event without its send time: {message}")
            latencies.append((received - sent) * 1000)
    await publishing


def sustained_rate(
    stack: Stack, fleet: Fleet, rates: list[float], seconds: float
) -> dict[str, Any]:
    """Step the offered rate up; 'kept up' = all stored within 2 s of the last publish.

    One message per device first, stored before the steps: the first sight of a device
    costs the worker two database round trips (lookup, ONLINE), a start-up cost."""
    steps = []
    worker = start_worker(stack, "ours", f"bench-ladder-{secrets.token_hex(3)}")
    load = Load(stack, fleet)
    warm_up = len(fleet.device_ids)
    before_warm_up = count_readings(stack)
    load.run(200, warm_up)
    wait_stored(stack, before_warm_up + warm_up, timeout=60)
    start_count = count_readings(stack)
    try:
        for rate in rates:
            before = count_readings(stack)
            count = int(rate * seconds)
            achieved = load.run(rate, count)
            drained = wait_stored(stack, before + count, timeout=2.0)
            steps.append(
                {
                    "offered_rate": rate,
                    "achieved_rate": round(achieved, 1),
                    "kept_up": drained is not None,
                }
            )
            if drained is None:
                wait_stored(stack, before + count, timeout=300)  # let it catch up: loss check
                break
    finally:
        load.close()
        report = stop_worker(worker)
    published = sum(int(s["offered_rate"] * seconds) for s in steps)
    stored = count_readings(stack) - start_count
    return {
        "steps": steps,
        "worker_report": report,
        "published": published,
        "stored": stored,
        "lost": published - stored,
    }


def loads() -> list[float]:
    """The machine's load averages (1, 5, 15 min): other work skews every number here."""
    return [round(value, 2) for value in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description="Ingest benchmark")
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument(
        "--workers",
        default="ours,naive,bare,lean",
        help="compared back to back at --rate; KIND:uvloop runs one on uvloop",
    )
    parser.add_argument(
        "--sweep", default="100,1000", help="other rates for our worker's CPU per message"
    )
    parser.add_argument(
        "--latency-rates",
        default="500,150",
        help="the issue's 500 msg/s, and one the stand-in stores as fast as it arrives",
    )
    parser.add_argument("--ladder", default="150,250,500,1000")
    parser.add_argument("--ladder-seconds", type=float, default=6)
    args = parser.parse_args()
    with stack() as running:
        asyncio.run(provision(running))
        api, api_url = start_api(running)
        try:
            fleet = asyncio.run(make_fleet(running, api_url, args.devices))
            cpu = []
            for kind in args.workers.split(","):
                cpu.append(cpu_per_message(running, fleet, kind, args.rate, args.messages))
                cpu[-1]["load_avg"] = loads()
                print(json.dumps(cpu[-1]), flush=True)
            sweep = []
            for rate in (float(r) for r in args.sweep.split(",") if r):
                sweep.append(cpu_per_message(running, fleet, "ours", rate, args.messages))
                sweep[-1]["load_avg"] = loads()
                print(json.dumps(sweep[-1]), flush=True)
            latency = []
            for rate in (float(r) for r in args.latency_rates.split(",")):
                count = int(min(rate * 10, 5000))
                row = asyncio.run(subscriber_latency(api_url, fleet, running, rate, count))
                latency.append(row)
                row["load_avg"] = loads()
                print(json.dumps(row), flush=True)
            ladder = sustained_rate(
                running, fleet, [float(r) for r in args.ladder.split(",")], args.ladder_seconds
            )
            ladder["load_avg"] = loads()
        finally:
            api.terminate()
            api.wait(timeout=15)
    results: dict[str, Any] = {"cpu": cpu, "cpu_sweep": sweep, "latency": latency}
    results["sustained"] = ladder
    by_kind = {r["worker"]: r for r in cpu}
    ours = by_kind.get("ours", cpu[0])
    if "naive" in by_kind:
        ratio = by_kind["naive"]["cpu_us_per_message"] / max(ours["cpu_us_per_message"], 0.001)
        results["cpu_ratio_naive_over_ours"] = round(ratio, 1)
    print_table(
        f"Worker CPU per message ({args.messages} messages, {args.devices} devices)",
        ["worker", "offered", "achieved", "stored/received", "complete", "CPU µs/msg", "load"],
        [
            [
                r["worker"],
                r["offered_rate"],
                r["achieved_rate"],
                r["stored"],
                r["complete"],
                r["cpu_us_per_message"],
                r["load_avg"][0],
            ]
            for r in cpu + sweep
        ],
    )
    print("bare = aiomqtt 2.5 (MQTT 5, QoS 1) that only counts; lean = ingest.mqtt that only acks")
    if "cpu_ratio_naive_over_ours" in results:
        print(f"naive / ours CPU per message: {results['cpu_ratio_naive_over_ours']}x")
    print_table(
        "Publish -> graphql-ws subscriber latency (after one message per device)",
        ["rate", "devices", "events", "p50 ms", "p99 ms", "max ms", "load"],
        [
            [
                row["rate"],
                row["devices"],
                row["events"],
                row["p50_ms"],
                row["p99_ms"],
                row["max_ms"],
                row["load_avg"][0],
            ]
            for row in latency
        ],
    )
    print_table(
        f"Sustained rate ({args.ladder_seconds:.0f} s per step)",
        ["offered msg/s", "achieved msg/s", "kept up"],
        [[s["offered_rate"], s["achieved_rate"], s["kept_up"]] for s in ladder["steps"]],
    )
    report = ladder["worker_report"]
    if report.get("stored"):
        store_rate = report["stored"] / max(report["store_seconds"], 1e-9)
        results["storage_ceiling_readings_per_s"] = round(store_rate)
        print(
            f"storage (insert_many) alone: {store_rate:.0f} readings/s over "
            f"{report['batches']:.0f} batches"
        )
    worker_ceiling = 1e6 / max(ours["cpu_us_per_message"], 0.001)
    results["worker_cpu_ceiling_msgs_per_s"] = round(worker_ceiling)
    print(f"worker CPU ceiling (one core): {worker_ceiling:.0f} msg/s")
    print(f"\nwritten: {write_results('ingest', results)}")


if __name__ == "__main__":
    main()
