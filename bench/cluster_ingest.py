"""Sustained QoS 1 ingest: one Mosquitto vs a 3-node RabbitMQ cluster, 2 workers each.

`python -m bench.cluster_ingest` (docs/performance.md, "Clustered broker").

Same run, same storage (the MongoDB stand-in, or MONGODB_URL), same Redis, same load
generator, same worker code (`python -m ingest`):

- **mosquitto**: the bench harness's Mosquitto with dynsec; two workers in one `$share`
  group (INGEST_SOURCE=mqtt); the load publishes as an any-device identity.
- **rabbitmq-3**: three private RabbitMQ 3.10 nodes clustered (tests/rabbitmq.py's
  `RabbitCluster`, the test suite's own helper), every login and check asked of an API
  process (`/broker/auth/rabbitmq`); two workers consuming the quorum queues
  (INGEST_SOURCE=amqp), worker n starting on node n; devices log in with their own
  credentials, device i on node i mod 3.

The load: DEVICES connections (one per device, MQTT 3.1.1, aiomqtt), each with WINDOW
QoS 1 publishes in flight, MESSAGES in all, as fast as PUBACKs come back. Measured:
publish rate (PUBACKs/s), the rate at which everything was stored (first publish to last
reading stored), exactly-once (readings == messages), CPU of the workers and the broker
processes per message. Prints a table, writes bench/results/cluster_ingest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiomqtt

from bench.broker_auth import start_api
from bench.harness import (
    ROOT,
    Stack,
    cpu_seconds,
    free_port,
    print_table,
    stack,
    write_results,
)
from bench.ingest import (
    PUBLISHER_PASSWORD,
    WORKER_PASSWORD,
    base_environment,
    count_readings,
    make_fleet,
    provision,
)
from core.settings import Settings
from services.broker_identities import device_password
from tests.rabbitmq import RabbitCluster, RabbitNode

INGEST_PASSWORD = secrets.token_urlsafe(16)


def process_group_cpu(pgid: int) -> float:
    """CPU seconds of every process in a process group (a RabbitMQ node: its VM and
    port programs)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                total += cpu_seconds(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return total


def worker_connected(metrics_port: int) -> bool:
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return False
    return "ingest_mqtt_connected 1.0" in text


@contextmanager
def workers(running: Stack, count: int, **env: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`python -m ingest` processes, worker n with `env` and `<KEY>_<n>` overrides."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        for n in range(1, count + 1):
            port = free_port()
            own = {
                key[: -len(f"_{n}")]: value for key, value in env.items() if key.endswith(f"_{n}")
            }
            shared = {key: value for key, value in env.items() if not key[-1].isdigit()}
            process = subprocess.Popen(
                [sys.executable, "-m", "ingest"],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=base_environment(
                    running,
                    INGEST_METRICS_PORT=str(port),
                    INGEST_CLIENT_ID=f"ingest-{n}",
                    INGEST_DEVICE_RATE_PER_SECOND="0",
                    **shared,
                    **own,
                ),
            )
            started.append(process)
            deadline = time.monotonic() + 60
            while not worker_connected(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker {n} did not connect")
                time.sleep(0.1)
        yield started
    finally:
        for process in started:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


async def offer(
    endpoints: list[tuple[str, int, str, str, str]], messages: int, window: int
) -> tuple[float, float]:
    """Publish `messages` QoS 1 readings over the endpoints (host, port, username,
    password, device id), `window` in flight per connection; (started, finished)."""
    per_device = messages // len(endpoints)

    async def device(host: str, port: int, username: str, password: str, device: str) -> None:
        async with aiomqtt.Client(
            host, port, username=username, password=password, identifier=device, timeout=30
        ) as client:
            client.pending_calls_threshold = 10 * window  # quiet: many publishes in flight
            topic = f"devices/{device}/telemetry"
            numbers = iter(range(per_device))

            async def lane() -> None:
                for number in numbers:
                    await client.publish(topic, json.dumps({"n": number}), qos=1)

            await asyncio.gather(*(lane() for _ in range(window)))

    started = time.perf_counter()
    await asyncio.gather(*(device(*endpoint) for endpoint in endpoints))
    return started, time.perf_counter()


def wait_for(running: Stack, target: int, timeout: float) -> float | None:
    """perf_counter when `target` readings are stored; None if not within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if count_readings(running) >= target:
            return time.perf_counter()
        time.sleep(0.05)
    return None


def clear_readings(running: Stack) -> None:
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]]
    with MongoClient(running.mongodb_url) as client:
        client[running.database]["readings"].delete_many({})


def measure(
    name: str,
    running: Stack,
    endpoints: list[tuple[str, int, str, str, str]],
    messages: int,
    window: int,
    worker_processes: list[subprocess.Popen[bytes]],
    broker_cpu: Any,
) -> dict[str, Any]:
    clear_readings(running)
    total = messages // len(endpoints) * len(endpoints)
    workers_before = sum(cpu_seconds(p.pid) for p in worker_processes)
    broker_before = broker_cpu()
    started, published = asyncio.run(offer(endpoints, messages, window))
    stored_at = wait_for(running, total, timeout=300)
    workers_cpu = sum(cpu_seconds(p.pid) for p in worker_processes) - workers_before
    broker = broker_cpu() - broker_before
    time.sleep(1.0)  # a duplicate would land by now
    stored = count_readings(running)
    return {
        "setup": name,
        "messages": total,
        "publish_per_second": round(total / (published - started)),
        "stored_per_second": round(total / (stored_at - started)) if stored_at else None,
        "stored": stored,
        "exactly_once": stored == total,
        "worker_cpu_us_per_message": round(workers_cpu / total * 1e6, 1),
        "broker_cpu_us_per_message": round(broker / total * 1e6, 1),
    }


async def _fleet(running: Stack, url: str, devices: int) -> list[str]:
    return (await make_fleet(running, url, devices)).device_ids


def run(devices: int, messages: int, window: int, rounds: int) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    secret, key = secrets.token_urlsafe(24), secrets.token_urlsafe(32)
    settings = Settings(_env_file=None, device_credential_key=key)
    with stack() as running, tempfile.TemporaryDirectory() as directory:
        asyncio.run(provision(running))
        # The API answers RabbitMQ's HTTP auth backend (and registers the fleet).
        api, url = start_api(running, secret, key, MQTT_INGEST_PASSWORD=INGEST_PASSWORD)
        cluster: RabbitCluster | None = None
        try:
            fleet = asyncio.run(_fleet(running, url, devices))
            mosquitto = [
                ("127.0.0.1", running.mqtt_port, "bench-load", PUBLISHER_PASSWORD, device)
                for device in fleet
            ]
            mosquitto_pid = mosquitto_process_id(running)
            with workers(
                running,
                2,
                MQTT_USERNAME="bench-worker",
                MQTT_PASSWORD=WORKER_PASSWORD,
                INGEST_SHARE_GROUP="bench",
            ) as processes:
                for _ in range(rounds):
                    results.append(
                        measure(
                            "mosquitto",
                            running,
                            mosquitto,
                            messages,
                            window,
                            processes,
                            lambda: cpu_seconds(mosquitto_pid),
                        )
                    )
            cluster = RabbitCluster(
                Path(directory) / "rabbitmq",
                api_url=url,
                secret=secret,
                management_user="bench-admin",
                management_password=secrets.token_urlsafe(16),
            )
            cluster.start()
            nodes = cluster.nodes
            rabbit = [
                (
                    nodes[i % 3].host,
                    nodes[i % 3].mqtt_port,
                    device,
                    device_password(settings, device, 1),
                    device,
                )
                for i, device in enumerate(fleet)
            ]
            with workers(
                running,
                2,
                INGEST_SOURCE="amqp",
                AMQP_URL_1=amqp_urls(nodes, 0),
                AMQP_URL_2=amqp_urls(nodes, 1),
                MQTT_USERNAME_1="iot-ingest-1",
                MQTT_USERNAME_2="iot-ingest-2",
                MQTT_PASSWORD=INGEST_PASSWORD,
            ) as processes:
                for _ in range(rounds):
                    results.append(
                        measure(
                            "rabbitmq-3",
                            running,
                            rabbit,
                            messages,
                            window,
                            processes,
                            lambda: sum(
                                process_group_cpu(n.process.pid) for n in nodes if n.process
                            ),
                        )
                    )
        finally:
            if cluster is not None:
                cluster.stop()
            api.terminate()
            api.wait(timeout=15)
    return results


def amqp_urls(nodes: list[RabbitNode], first: int) -> str:
    order = [*nodes[first:], *nodes[:first]]
    return ",".join(f"amqp://{n.host}:{n.amqp_port}/" for n in order)


def mosquitto_process_id(running: Stack) -> int:
    """The harness's Mosquitto: the process listening on its port's config."""
    config = str(running.broker.config)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if command and command[0].endswith(b"mosquitto") and config.encode() in command:
                return int(entry.name)
    raise RuntimeError("the harness's Mosquitto is not running")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=30)
    parser.add_argument("--messages", type=int, default=15_000)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    load_before = os.getloadavg()
    results = run(args.devices, args.messages, args.window, args.rounds)
    load_after = os.getloadavg()
    print_table(
        f"Sustained QoS 1 ingest, {args.devices} devices x {args.window} in flight, "
        "2 workers, same storage",
        [
            "setup",
            "messages",
            "PUBACKs/s",
            "stored/s",
            "exactly once",
            "worker CPU µs/msg",
            "broker CPU µs/msg",
        ],
        [
            [
                r["setup"],
                r["messages"],
                r["publish_per_second"],
                r["stored_per_second"],
                r["exactly_once"],
                r["worker_cpu_us_per_message"],
                r["broker_cpu_us_per_message"],
            ]
            for r in results
        ],
    )
    path = write_results(
        "cluster_ingest",
        {
            "devices": args.devices,
            "window": args.window,
            "load_average_before_after": [load_before[0], load_after[0]],
            "runs": results,
        },
    )
    print(f"\nwritten: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
