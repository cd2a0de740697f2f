"""Commands benchmark: `python -m bench.commands` (see docs/performance.md, Commands).

1. sendCommand -> the device receives it: p50 / p99 at a steady rate (default 100
   commands/s) spread over 100 ONLINE devices. Each request is sent on schedule, not
   after the previous answer; the clock starts just before the HTTP request and stops
   when the device's MQTT client hands over the message.
2. Queued commands reaching a reconnecting device: devices go offline, commands are
   queued for them, they reconnect (subscribe, then publish `online`); the time from
   that publish until the device holds every one of its queued commands.

Everything real and in processes of its own: the API (`python -m api`), the ingest
worker (`python -m ingest`, which turns `online` into ONLINE and its status event),
Mosquitto with dynamic security, a Redis of the benchmark's own, the MongoDB
stand-in (or MONGODB_URL). The devices and the HTTP client share this process.
Prints tables and writes bench/results/commands.json.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import httpx
from pymongo import AsyncMongoClient

from bench.apis import api_environment, api_processes, load_average, private_redis
from bench.harness import ROOT, Stack, cpu_seconds, print_table, stack, write_results

# How often the round-trip probe asks the database during the steady phase.
PROBE_INTERVAL = 0.02
# How long the API and worker are watched idle before it (their background's cost).
IDLE_SECONDS = 5.0

INGEST_PASSWORD = secrets.token_urlsafe(16)
REGISTER = (
    "mutation($e: String!, $p: String!) { register(input: {email: $e, password: $p}) "
    "{ accessToken user { id } } }"
)
CREATE_DEVICE = (
    'mutation($n: String!) { createDevice(input: {name: $n, type: "bench"}) '
    "{ device { id } credentials { mqttUsername mqttPassword } } }"
)
SEND = (
    'mutation($d: ID!, $p: JSON) { sendCommand(input: {deviceId: $d, name: "ping", '
    "params: $p}) { id state } }"
)
DEVICES = "{ devices(first: 100) { edges { node { id status } } } }"


@dataclass
class SimDevice:
    id: str
    username: str
    password: str
    # command id -> monotonic time it arrived
    arrived: dict[str, float] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class Client:
    def __init__(self, url: str, token: str | None = None) -> None:
        self.http = httpx.AsyncClient(
            base_url=url, timeout=30, limits=httpx.Limits(max_connections=200)
        )
        self.token = token

    async def call(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        body: dict[str, Any] = response.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]  # type: ignore[no-any-return]


def start_worker(stack: Stack, redis_url: str) -> subprocess.Popen[bytes]:
    """`python -m ingest` as worker 1, the identity the API provisions."""
    env = api_environment(
        stack,
        redis_url,
        MQTT_USERNAME="iot-ingest-1",
        MQTT_PASSWORD=INGEST_PASSWORD,
        INGEST_CLIENT_ID="ingest-1",
        INGEST_METRICS_PORT="0",
        INGEST_WORKERS="1",
    )
    return subprocess.Popen([sys.executable, "-m", "ingest"], cwd=ROOT, env=env)


async def device_session(device: SimDevice, host: str, port: int, stop: asyncio.Event) -> None:
    """Connected until `stop`: subscribed to its commands, then `online`; `offline` at the end."""
    status = f"devices/{device.id}/status"
    async with aiomqtt.Client(
        host, port, username=device.username, password=device.password, identifier=device.id
    ) as client:
        await client.subscribe(f"devices/{device.id}/commands/+", qos=1)
        await client.publish(status, b"online", qos=1)
        device.changed.set()

        async def read() -> None:
            async for message in client.messages:
                now = time.monotonic()
                command_id = str(message.topic).rsplit("/", 1)[1]
                device.arrived.setdefault(command_id, now)
                device.changed.set()

        reader = asyncio.create_task(read())
        await stop.wait()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await client.publish(status, b"offline", qos=1)


async def wait_statuses(client: Client, ids: set[str], status: str) -> None:
    """Until the platform shows every one of `ids` with `status` (at most a minute)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            edges = (await client.call(DEVICES))["devices"]["edges"]
        except RuntimeError as err:  # a loaded stand-in may run out of query time
            print(f"  devices query failed ({err}); again", flush=True)
            edges = [{"node": {"id": i, "status": "?"}} for i in ids]
        if all(e["node"]["status"] == status for e in edges if e["node"]["id"] in ids):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"devices not {status} within 60 s")
        await asyncio.sleep(0.1)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(latencies_ms: list[float]) -> dict[str, float]:
    if not latencies_ms:
        return {"count": 0}
    return {
        "count": len(latencies_ms),
        "p50_ms": round(percentile(latencies_ms, 0.50), 2),
        "p90_ms": round(percentile(latencies_ms, 0.90), 2),
        "p99_ms": round(percentile(latencies_ms, 0.99), 2),
        "max_ms": round(max(latencies_ms), 2),
        "mean_ms": round(statistics.fmean(latencies_ms), 2),
    }


async def probe_round_trips(stack: Stack, stop: asyncio.Event) -> list[float]:
    """The database's answer time (ms) to a `find_one` by _id on the commands
    collection, asked every PROBE_INTERVAL until `stop`: what one of a send's round
    trips costs at that moment, measured beside it in the same run."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongodb_url)
    commands = client[stack.database]["commands"]
    times: list[float] = []
    try:
        while not stop.is_set():
            began = time.perf_counter()
            await commands.find_one({"_id": 0}, {"_id": 1})
            times.append((time.perf_counter() - began) * 1000)
            await asyncio.sleep(PROBE_INTERVAL)
    finally:
        await client.close()
    return times


async def steady_rate(
    client: Client, devices: list[SimDevice], rate: float, seconds: float
) -> dict[str, Any]:
    """sendCommand at `rate` per second round robin over the devices; send -> receive."""
    total = int(rate * seconds)
    sent_at: dict[str, tuple[SimDevice, float]] = {}
    states: dict[str, int] = {}
    errors: list[str] = []

    async def one(device: SimDevice) -> None:
        began = time.monotonic()
        try:
            answer = await client.call(SEND, {"d": device.id, "p": {"t": began}})
        except (httpx.HTTPError, RuntimeError) as err:
            errors.append(type(err).__name__)
            return
        command = answer["sendCommand"]
        sent_at[command["id"]] = (device, began)
        states[command["state"]] = states.get(command["state"], 0) + 1

    tasks = []
    start = time.monotonic()
    for n in range(total):
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
        tasks.append(asyncio.create_task(one(devices[n % len(devices)])))
    await asyncio.gather(*tasks)
    offered = total / (time.monotonic() - start)
    deadline = time.monotonic() + 10
    while any(cid not in dev.arrived for cid, (dev, _) in sent_at.items()):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    latencies = [
        (dev.arrived[cid] - began) * 1000
        for cid, (dev, began) in sent_at.items()
        if cid in dev.arrived
    ]
    return {
        "rate_per_s": rate,
        "offered_per_s": round(offered, 1),
        "devices": len(devices),
        "sent": total,
        "received": len(latencies),
        "states_returned": states,
        "errors": len(errors),
        **summary(latencies),
    }


async def reconnect_delivery(
    client: Client,
    devices: list[SimDevice],
    host: str,
    port: int,
    per_device: int,
    rounds: int,
) -> dict[str, Any]:
    """Queue commands for offline devices; time from `online` to the last one received."""
    times: list[float] = []
    for _ in range(rounds):
        queued: dict[str, list[str]] = {}
        for device in devices:
            ids = []
            for n in range(per_device):
                answer = await client.call(SEND, {"d": device.id, "p": {"n": n}})
                assert answer["sendCommand"]["state"] == "QUEUED", answer
                ids.append(answer["sendCommand"]["id"])
            queued[device.id] = ids
        stop = asyncio.Event()
        online_at = time.monotonic()
        sessions = [
            asyncio.create_task(device_session(device, host, port, stop)) for device in devices
        ]
        deadline = online_at + 30
        for device in devices:
            while not all(cid in device.arrived for cid in queued[device.id]):
                if time.monotonic() > deadline:
                    raise RuntimeError("queued commands did not arrive within 30 s")
                device.changed.clear()
                try:
                    async with asyncio.timeout(1):
                        await device.changed.wait()
                except TimeoutError:
                    pass
            # From the device's own `online` publish (its session connects first).
            times.append((max(device.arrived[c] for c in queued[device.id]) - online_at) * 1000)
        stop.set()
        await asyncio.gather(*sessions)
        await wait_statuses(client, {d.id for d in devices}, "OFFLINE")
    return {
        "devices": len(devices),
        "queued_per_device": per_device,
        "rounds": rounds,
        "note": "from connecting (subscribe, then publish online) to the last queued "
        "command received; the MQTT connect itself included",
        **summary(times),
    }


async def measured_steady(
    args: argparse.Namespace, bench: Stack, api_pid: int, client: Client, devices: list[SimDevice]
) -> dict[str, Any]:
    """The steady phase, with what it cost: the API's CPU per command, less what it
    spends idle (its background loops: outbox, reminders, sweeps), and the database's
    round-trip time meanwhile. (The stand-in's opcounters count a find twice, so round
    trips per send are counted in docs/performance.md with a CommandListener instead.)"""
    cpu_before = cpu_seconds(api_pid)
    await asyncio.sleep(IDLE_SECONDS)
    idle_cpu = (cpu_seconds(api_pid) - cpu_before) / IDLE_SECONDS
    cpu_before = cpu_seconds(api_pid)
    stop_probe = asyncio.Event()
    probe = asyncio.create_task(probe_round_trips(bench, stop_probe))
    started = time.monotonic()
    steady = await steady_rate(client, devices, args.rate, args.seconds)
    elapsed = time.monotonic() - started
    stop_probe.set()
    round_trips = await probe
    cpu = cpu_seconds(api_pid) - cpu_before - idle_cpu * elapsed
    steady["idle_api_cpu_ms_per_s"] = round(idle_cpu * 1000, 2)
    steady["api_cpu_ms_per_command"] = round(cpu / max(steady["received"], 1) * 1000, 2)
    steady["database_round_trip"] = summary(round_trips)
    steady["load_average"] = load_average()
    return steady


async def run(args: argparse.Namespace, bench: Stack, api_url: str, api_pid: int) -> dict[str, Any]:
    host, port = "127.0.0.1", bench.mqtt_port
    run_id = secrets.token_hex(4)
    anonymous = Client(api_url)
    await anonymous.call(REGISTER, {"e": f"bench-admin-{run_id}@example.com", "p": "bench-pass"})
    registered = await anonymous.call(
        REGISTER, {"e": f"bench-{run_id}@example.com", "p": "pw-bench"}
    )
    await anonymous.http.aclose()
    client = Client(api_url, registered["register"]["accessToken"])
    devices = []
    for n in range(args.devices):
        created = (await client.call(CREATE_DEVICE, {"n": f"bench-{n}"}))["createDevice"]
        credentials = created["credentials"]
        devices.append(
            SimDevice(
                created["device"]["id"], credentials["mqttUsername"], credentials["mqttPassword"]
            )
        )
    print(f"{len(devices)} devices created; connecting them", flush=True)
    results: dict[str, Any] = {}
    stop = asyncio.Event()
    sessions = [asyncio.create_task(device_session(d, host, port, stop)) for d in devices]
    await wait_statuses(client, {d.id for d in devices}, "ONLINE")
    print("all ONLINE; warming up", flush=True)
    # Warm-up: every device's first command (connections, caches).
    await steady_rate(client, devices, args.rate, len(devices) / args.rate)
    print(f"measuring {args.rate:g} commands/s for {args.seconds:g} s", flush=True)
    results["steady"] = await measured_steady(args, bench, api_pid, client, devices)
    stop.set()
    await asyncio.gather(*sessions)
    await wait_statuses(client, {d.id for d in devices}, "OFFLINE")
    print("measuring reconnects", flush=True)
    results["reconnect"] = await reconnect_delivery(
        client, devices[: args.reconnecting], host, port, args.queued, args.rounds
    )
    await client.http.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.commands")
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--rate", type=float, default=100.0, help="commands per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--reconnecting", type=int, default=20, help="devices reconnecting")
    parser.add_argument("--queued", type=int, default=5, help="commands queued per device")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--name", default="commands", help="bench/results/<name>.json")
    args = parser.parse_args()
    with stack() as bench, private_redis() as redis_url:
        extra = {"MQTT_INGEST_PASSWORD": INGEST_PASSWORD, "INGEST_WORKERS": "1"}
        extra["REGISTRATIONS_PER_ADDRESS"] = "1000000"
        extra["DEVICES_PER_USER_MAX"] = "100000"
        with api_processes(bench, redis_url, 1, **extra) as apis:
            worker = start_worker(bench, redis_url)
            try:
                api_cpu = cpu_seconds(apis[0].pid)
                results = asyncio.run(run(args, bench, apis[0].url, apis[0].pid))
                results["api_cpu_seconds"] = round(cpu_seconds(apis[0].pid) - api_cpu, 2)
            finally:
                worker.terminate()
                worker.wait(timeout=15)
    steady, reconnect = results["steady"], results["reconnect"]
    print_table(
        f"sendCommand -> device receives it, {steady['rate_per_s']:g}/s over "
        f"{steady['devices']} ONLINE devices ({steady['sent']} commands)",
        ["received", "p50 ms", "p90 ms", "p99 ms", "max ms", "target p99"],
        [[
            f"{steady['received']}/{steady['sent']}", steady["p50_ms"], steady["p90_ms"],
            steady["p99_ms"], steady["max_ms"], "<= 50 ms",
        ]],
    )  # fmt: skip
    trip = steady["database_round_trip"]
    print_table(
        "what a send cost meanwhile (same run)",
        ["API CPU / command", "API CPU idle", "DB round trip p50", "p99"],
        [[
            f"{steady['api_cpu_ms_per_command']} ms", f"{steady['idle_api_cpu_ms_per_s']} ms/s",
            f"{trip.get('p50_ms')} ms", f"{trip.get('p99_ms')} ms",
        ]],
    )  # fmt: skip
    print_table(
        f"queued commands reach a reconnecting device ({reconnect['devices']} devices x "
        f"{reconnect['queued_per_device']} commands, {reconnect['rounds']} rounds)",
        ["p50 ms", "p90 ms", "p99 ms", "max ms", "target"],
        [[
            reconnect["p50_ms"], reconnect["p90_ms"], reconnect["p99_ms"], reconnect["max_ms"],
            "<= 1 s",
        ]],
    )  # fmt: skip
    path = write_results(args.name, {"args": vars(args), **results})
    print(f"\nwrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
