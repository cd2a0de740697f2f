"""What MQTT over WebSockets through devstack.ws_bridge adds to a round trip.

`python -m bench.ws_bridge [--messages 2000] [--sizes 64,16384] [--rounds 3]` starts the
project's Mosquitto (dynsec, TLS listener, certificates from devstack.certs) and the
bridge as `make run` does (its own process), then, on each transport, one client
publishes QoS 0 to a topic it subscribes to, one message at a time, and times
publish -> receive back: over TCP and TLS directly, over ws:// and wss:// through the
bridge. The clients speak raw MQTT 3.1.1 (asyncio streams; the `websockets` client for
WebSockets), so what differs between rows is the transport, not a client library. The
transports take turns, in rotated order, within each round. Prints a table and writes
bench/results/ws_bridge.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from bench.harness import ROOT, cpu_seconds, free_port, print_table, write_results
from core.dynsec import connect_dynsec
from devstack.certs import ensure_certificates
from devstack.mosquitto import (
    BrokerLayout,
    init_dynsec,
    mosquitto_command,
    wait_for_port,
    write_config,
)

TRANSPORTS = ("tcp", "tls", "ws", "wss")
WARMUP = 200


def _field(value: bytes) -> bytes:
    return len(value).to_bytes(2, "big") + value


def _packet(first: int, body: bytes) -> bytes:
    size, length = len(body), bytearray()
    while True:
        size, digit = divmod(size, 128)
        length.append(digit | (0x80 if size else 0))
        if not size:
            return bytes([first]) + bytes(length) + body


def connect_packet(client_id: str, username: str, password: str) -> bytes:
    flags = 0x80 | 0x40 | 0x02  # username, password, clean session
    body = _field(b"MQTT") + bytes([4, flags]) + (60).to_bytes(2, "big")
    body += _field(client_id.encode()) + _field(username.encode()) + _field(password.encode())
    return _packet(0x10, body)


class Stream:
    """MQTT packets over a byte stream, whatever carries it."""

    def __init__(
        self, send: Callable[[bytes], Awaitable[None]], receive: Callable[[], Awaitable[bytes]]
    ):
        self.send, self._receive, self._buffer = send, receive, bytearray()

    async def packet(self) -> tuple[int, bytes]:
        while True:
            parsed = self._parse()
            if parsed is not None:
                return parsed
            chunk = await self._receive()
            if not chunk:
                raise ConnectionError("closed")
            self._buffer += chunk

    def _parse(self) -> tuple[int, bytes] | None:
        size, shift, index = 0, 0, 1
        while True:
            if index >= len(self._buffer):
                return None
            byte = self._buffer[index]
            size |= (byte & 0x7F) << shift
            shift, index = shift + 7, index + 1
            if not byte & 0x80:
                break
        if len(self._buffer) < index + size:
            return None
        first, body = self._buffer[0], bytes(self._buffer[index : index + size])
        del self._buffer[: index + size]
        return first, body


async def open_stream(
    stack: AsyncExitStack, transport: str, ports: dict[str, int], ca: Path
) -> Stream:
    context = ssl.create_default_context(cafile=ca) if transport in ("tls", "wss") else None
    if transport in ("tcp", "tls"):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1",
            ports[transport],
            ssl=context,
            server_hostname="localhost" if context else None,
        )
        stack.callback(writer.close)

        async def send_tcp(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        return Stream(send_tcp, lambda: reader.read(65536))
    scheme = "wss" if context else "ws"
    websocket = await stack.enter_async_context(
        connect(
            f"{scheme}://localhost:{ports[transport]}/mqtt",
            subprotocols=["mqtt"],  # type: ignore[list-item]
            ssl=context,
            compression=None,
            max_size=None,
        )
    )

    async def receive_ws() -> bytes:
        message = await websocket.recv()
        return message if isinstance(message, bytes) else message.encode()

    return Stream(websocket.send, receive_ws)


async def round_trips(
    transport: str, ports: dict[str, int], ca: Path, login: tuple[str, str], size: int, count: int
) -> list[float]:
    """Publish -> receive back, one at a time: the round trips in ms (after a warm-up)."""
    topic = f"bench/{transport}".encode()
    async with AsyncExitStack() as stack:
        stream = await open_stream(stack, transport, ports, ca)
        await stream.send(connect_packet(login[0], *login))
        assert await stream.packet() == (0x20, b"\x00\x00"), "CONNECT refused"
        await stream.send(_packet(0x82, (1).to_bytes(2, "big") + _field(topic) + b"\x00"))
        assert (await stream.packet())[0] == 0x90
        body = _field(topic) + b"x" * size
        publish = _packet(0x30, body)
        samples: list[float] = []
        for index in range(WARMUP + count):
            start = time.perf_counter()
            await stream.send(publish)
            first, received = await stream.packet()
            elapsed = (time.perf_counter() - start) * 1000
            assert first & 0xF0 == 0x30 and received == body, (first, len(received))
            if index >= WARMUP:
                samples.append(elapsed)
        await stream.send(b"\xe0\x00")  # DISCONNECT
        return samples


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def provision(layout: BrokerLayout, admin_password: str) -> tuple[str, str]:
    """A client that may publish and subscribe under bench/ only."""
    username, password = f"bench-{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    acls = [
        {"acltype": kind, "topic": "bench/#", "allow": True}
        for kind in ("publishClientSend", "publishClientReceive", "subscribePattern")
    ]
    async with connect_dynsec(
        "127.0.0.1", layout.port, username="bench-admin", password=admin_password
    ) as dynsec:
        await dynsec.execute(
            {"command": "createRole", "rolename": "bench", "acls": acls},
            {
                "command": "createClient",
                "username": username,
                "clientid": username,
                "password": password,
                "roles": [{"rolename": "bench"}],
            },
        )
    return username, password


@dataclass(frozen=True, slots=True)
class Setup:
    ports: dict[str, int]
    ca: Path
    bridge_pid: int
    broker: BrokerLayout
    admin_password: str


@contextmanager
def running(directory: Path) -> Iterator[Setup]:
    """The broker (TLS listener on) and the bridge as `make run` starts them."""
    certificates = ensure_certificates(directory / "certs")
    layout = BrokerLayout(directory / "mosquitto", free_port(), free_port(), certificates)
    admin_password = secrets.token_urlsafe(16)
    write_config(layout)
    init_dynsec(layout, "bench-admin", admin_password)
    ports = {"tcp": layout.port, "tls": layout.tls_port or 0, "ws": free_port(), "wss": free_port()}
    broker = subprocess.Popen(mosquitto_command(layout), stderr=subprocess.DEVNULL)
    bridge_argv = [sys.executable, "-m", "devstack.ws_bridge", "--broker-port", str(layout.port)]
    bridge_argv += ["--port", str(ports["ws"]), "--tls-port", str(ports["wss"])]
    bridge_argv += ["--certfile", str(certificates.server_cert)]
    bridge_argv += ["--keyfile", str(certificates.server_key), "--log-level", "WARNING"]
    bridge = subprocess.Popen(bridge_argv, cwd=ROOT)
    try:
        for port in ports.values():
            wait_for_port("127.0.0.1", port)
        yield Setup(ports, certificates.ca_cert, bridge.pid, layout, admin_password)
    finally:
        bridge.terminate()
        broker.terminate()
        bridge.wait(timeout=10)
        broker.wait(timeout=10)


async def measure(args: argparse.Namespace, setup: Setup) -> dict[str, Any]:
    login = await provision(setup.broker, setup.admin_password)
    samples: dict[tuple[str, int], list[float]] = {}
    bridge_cpu: dict[tuple[str, int], list[float]] = {}
    for round_index in range(args.rounds):
        order = TRANSPORTS[round_index % 4 :] + TRANSPORTS[: round_index % 4]
        for size in args.sizes:
            for transport in order:
                cpu_before = cpu_seconds(setup.bridge_pid)
                rtts = await round_trips(
                    transport, setup.ports, setup.ca, login, size, args.messages
                )
                cpu = cpu_seconds(setup.bridge_pid) - cpu_before
                samples.setdefault((transport, size), []).extend(rtts)
                bridge_cpu.setdefault((transport, size), []).append(
                    cpu / (WARMUP + args.messages) * 1e6
                )
                print(
                    f"round {round_index + 1}, {size} B, {transport}: "
                    f"p50 {statistics.median(rtts):.3f} ms",
                    flush=True,
                )
    rows = []
    for (transport, size), values in samples.items():
        direct = samples[("tcp" if transport in ("tcp", "ws") else "tls", size)]
        rows.append(
            {
                "transport": transport,
                "payload_bytes": size,
                "round_trips": len(values),
                "p50_ms": round(statistics.median(values), 4),
                "p99_ms": round(percentile(values, 0.99), 4),
                "mean_ms": round(statistics.fmean(values), 4),
                "added_p50_ms": round(statistics.median(values) - statistics.median(direct), 4),
                "added_p99_ms": round(percentile(values, 0.99) - percentile(direct, 0.99), 4),
                "bridge_cpu_us_per_round_trip": round(
                    statistics.median(bridge_cpu[(transport, size)]), 1
                ),
            }
        )
    return {"messages_per_run": args.messages, "rounds": args.rounds, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--sizes", type=lambda text: [int(s) for s in text.split(",")], default=[64, 16384]
    )
    args = parser.parse_args()
    load_before = list(os.getloadavg())
    with (
        tempfile.TemporaryDirectory(prefix="bench-ws-") as directory,
        running(Path(directory)) as setup,
    ):
        results = asyncio.run(measure(args, setup))
    load_after = list(os.getloadavg())
    header = [
        "transport",
        "payload B",
        "p50 ms",
        "p99 ms",
        "added p50 ms",
        "added p99 ms",
        "bridge CPU µs",
    ]
    table = [
        [
            row["transport"],
            row["payload_bytes"],
            f"{row['p50_ms']:.3f}",
            f"{row['p99_ms']:.3f}",
            f"{row['added_p50_ms']:+.3f}",
            f"{row['added_p99_ms']:+.3f}",
            row["bridge_cpu_us_per_round_trip"],
        ]
        for row in results["rows"]
    ]
    print_table(
        "MQTT QoS 0 publish -> receive back, one at a time (added: vs TCP, wss vs TLS)",
        header,
        table,
    )
    print(f"\nload average before {load_before}, after {load_after}")
    path = write_results(
        "ws_bridge",
        results | {"load_average_before": load_before, "load_average_after": load_after},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
