"""Broker HTTP auth under a connect storm: `python -m bench.broker_auth` (docs/brokers.md).

One API process (`python -m api`) with BROKER_AUTH_SECRET; 1,000 devices (written to
the database directly) each "connect" the way RabbitMQ 3.10's MQTT plugin asks when a
device logs in, subscribes to its commands and publishes telemetry: user, vhost,
resource (queue configure/read/write, exchange read), topic read, exchange write, topic
write -- 9 requests, form-encoded POSTs with HTTP Basic, as rabbitmq_auth_backend_http
sends them. CONCURRENCY keep-alive connections, one request in flight each (RabbitMQ's
httpc pool does the same).

Two rounds: cold (each device's credentials version is read from MongoDB once and
cached in Redis) and warm (the cache answers). Latency per request is what the broker
waits for. Real Mosquitto (the API administers it), Redis, the MongoDB stand-in (or
MONGODB_URL); writes bench/results/broker_auth.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from typing import Any
from urllib.parse import urlencode, urlsplit

from bench.harness import ROOT, Stack, cpu_seconds, free_port, print_table, stack, write_results
from bench.http_load import KeepAlive
from bench.ingest import base_environment, make_fleet
from core.settings import Settings
from services.broker_identities import device_password

PATH = "/broker/auth/rabbitmq"


def start_api(
    running: Stack, secret: str, key: str, **extra: str
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "api"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        env=base_environment(
            running,
            API_PORT=str(port),
            MQTT_USERNAME="bench-admin",
            MQTT_PASSWORD=running.admin_password,
            REGISTRATIONS_PER_ADDRESS="1000000",
            BROKER_AUTH_SECRET=secret,
            DEVICE_CREDENTIAL_KEY=key,
            **extra,
        ),
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(400):
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)  # noqa: S310 - local
            break
        except OSError:
            time.sleep(0.05)
    return process, url


def form_request(host: str, secret: str, path: str, form: dict[str, str]) -> bytes:
    body = urlencode(form).encode()
    auth = base64.b64encode(f"rabbitmq:{secret}".encode()).decode()
    return (
        f"POST {PATH}/{path} HTTP/1.1\r\nHost: {host}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Authorization: Basic {auth}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def connect_sequence(host: str, secret: str, device: str, password: str) -> list[bytes]:
    """What RabbitMQ asks for one device: login, subscribe to commands, publish once."""
    common = {"username": device, "vhost": "/", "client_id": device}
    queue = f"mqtt-subscription-{device}qos1"
    topic = {"resource": "topic", "name": "amq.topic", "variable_map.client_id": device}
    steps: list[tuple[str, dict[str, str]]] = [
        ("user", {**common, "password": password}),
        ("vhost", {**common, "ip": "127.0.0.1"}),
        *[
            ("resource", {**common, "resource": "queue", "name": queue, "permission": p})
            for p in ("configure", "read", "write")
        ],
        ("resource", {**common, "resource": "exchange", "name": "amq.topic", "permission": "read"}),
        (
            "topic",
            {
                **common,
                **topic,
                "permission": "read",
                "routing_key": f"devices.{device}.commands.#",
            },
        ),
        (
            "resource",
            {**common, "resource": "exchange", "name": "amq.topic", "permission": "write"},
        ),
        (
            "topic",
            {
                **common,
                **topic,
                "permission": "write",
                "routing_key": f"devices.{device}.telemetry",
            },
        ),
    ]
    return [form_request(host, secret, path, form) for path, form in steps]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def storm(url: str, sequences: list[list[bytes]], concurrency: int) -> dict[str, Any]:
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[list[bytes]] = asyncio.Queue()
    for sequence in sequences:
        queue.put_nowait(sequence)
    latencies: list[float] = []
    answers = {"allow": 0, "deny": 0}

    async def client() -> None:
        _, protocol = await loop.create_connection(
            KeepAlive, parts.hostname or "127.0.0.1", parts.port or 80
        )
        try:
            while not queue.empty():
                for request in queue.get_nowait():
                    started = time.perf_counter()
                    body = await protocol.post(request)
                    latencies.append((time.perf_counter() - started) * 1000)
                    answers[body.decode()] = answers.get(body.decode(), 0) + 1
        finally:
            assert protocol.transport is not None
            protocol.transport.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "seconds": round(elapsed, 2),
        "requests_per_second": round(len(latencies) / elapsed),
        "p50_ms": round(percentile(latencies, 0.50), 3),
        "p99_ms": round(percentile(latencies, 0.99), 3),
        "max_ms": round(max(latencies), 3),
        "answers": answers,
    }


async def run(devices: int, concurrencies: list[int]) -> dict[str, Any]:
    secret, key = secrets.token_urlsafe(24), secrets.token_urlsafe(32)
    settings = Settings(_env_file=None, device_credential_key=key)
    with stack() as running:
        process, url = start_api(running, secret, key)
        try:
            fleet = await make_fleet(running, url, devices)
            host = urlsplit(url).netloc
            # make_fleet writes credentials version 1 (the model's default).
            sequences = [
                connect_sequence(host, secret, device, device_password(settings, device, 1))
                for device in fleet.device_ids
            ]
            rounds: dict[str, Any] = {}
            names = [("cold", concurrencies[0])] + [(f"warm c={n}", n) for n in concurrencies]
            for name, concurrency in names:
                cpu_before = cpu_seconds(process.pid)
                result = await storm(url, sequences, concurrency)
                result["api_cpu_us_per_request"] = round(
                    (cpu_seconds(process.pid) - cpu_before) / result["requests"] * 1e6, 1
                )
                rounds[name] = result
            return rounds
        finally:
            process.terminate()
            process.wait(timeout=15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=1000)
    # Connections in parallel: the cold round uses the first; a warm round each.
    parser.add_argument("--concurrency", default="20,4,1")
    args = parser.parse_args()
    load_before = os.getloadavg()
    concurrencies = [int(n) for n in args.concurrency.split(",")]
    rounds = asyncio.run(run(args.devices, concurrencies))
    load_after = os.getloadavg()
    print_table(
        f"Broker auth, {args.devices} devices x 9 requests (c = connections in parallel)",
        ["round", "requests/s", "p50 ms", "p99 ms", "max ms", "API CPU µs/req", "answers"],
        [
            [
                name,
                r["requests_per_second"],
                r["p50_ms"],
                r["p99_ms"],
                r["max_ms"],
                r["api_cpu_us_per_request"],
                r["answers"],
            ]
            for name, r in rounds.items()
        ],
    )
    print(f"\nload average before {load_before}, after {load_after}")
    path = write_results(
        "broker_auth",
        {
            "devices": args.devices,
            "concurrency": concurrencies,
            "load_average_before": load_before,
            "load_average_after": load_after,
            "rounds": rounds,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
