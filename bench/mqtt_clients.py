"""MQTT receive-and-acknowledge benchmark: `python -m bench.mqtt_clients [--rounds 3]` (issue 13).

The worker's own MQTT 5 subscriber (ingest.mqtt) against paho-mqtt 2
(`manual_ack=True`, `Client.ack()`, its network thread) and gmqtt
(`optimistic_acknowledgement=False`: the PUBACK goes when the async on_message
returns), on the path the worker needs: a persistent MQTT 5 session with Receive
Maximum 1000 (INGEST_QUEUE_SIZE's default) subscribed at QoS 1 to a shared
subscription, each message acknowledged after a no-op "storage" step (one
`await asyncio.sleep(0)` per batch for the own client, per message for gmqtt;
none for paho's callback), then a clean exit.

Each subscriber is its own process; a separate publisher process (raw MQTT
3.1.1 over a socket, to cost the broker and not the subscriber) sends N
telemetry-shaped QoS 1 messages at 500/s and as fast as it can. Reported per
client: CPU µs per message (the subscriber's `time.process_time()`, all
threads, from subscribed to disconnected), msg/s (first to last message),
publish -> receive latency p50/p99 (CLOCK_MONOTONIC stamped in the payload),
and messages redelivered when the same session is resumed afterwards (0 means
every PUBACK reached the broker before the exit). A Mosquitto is started on a
free port with a minimal config. Prints a table, writes
bench/results/mqtt_clients.json.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import ROOT, free_port, print_table, write_results
from devstack.mosquitto import wait_for_port

RECEIVE_MAXIMUM = 1000
SESSION_EXPIRY = 300
GROUP_FILTER = "$share/bench/devices/+/telemetry"
DEVICES = 10
CHILD_TIMEOUT = 120.0
# (label, client, read pause in s); the worker's default INGEST_READ_PAUSE_MS is 5.
CLIENTS = [
    ("own (read_pause 5 ms)", "own", 0.005),
    ("own (read_pause 0)", "own", 0.0),
    ("paho-mqtt 2 (thread)", "paho", 0.0),
    ("gmqtt", "gmqtt", 0.0),
]
RATES = [(500, 5000), (0, 30000)]  # (offered msg/s, 0: as fast as possible; messages)

_PAYLOAD = (
    b'{"sent":%019d,"seq":%09d,"temperature":{"value":21.53,"unit":"\xc2\xb0C"},'
    b'"humidity":{"value":48.2,"unit":"%%"},"battery":{"value":87.31,"unit":"%%"},'
    b'"ts":1760000000000}'
)


def sent_at(payload: bytes) -> int:
    """The publisher's CLOCK_MONOTONIC stamp (ns) at its fixed place in the payload."""
    return int(payload[8:27])


class Tally:
    """What a subscriber counts; the same work per message for every client."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.received = 0
        self.latencies_ns: list[int] = []
        self.first = 0.0
        self.last = 0.0
        self.cpu_start = 0.0

    def ready(self) -> None:
        """Subscribed: start the CPU clock (imports, connect, subscribe not counted)."""
        self.cpu_start = time.process_time()
        ready()

    def record(self, payload: bytes) -> None:
        now = time.monotonic_ns()
        if not self.received:
            self.first = time.perf_counter()
        self.received += 1
        self.latencies_ns.append(now - sent_at(payload))
        if self.received >= self.count:
            self.last = time.perf_counter()

    @property
    def done(self) -> bool:
        return self.received >= self.count


# ------------------------------------------------------------------ subscribers


async def sub_own(port: int, client_id: str, tally: Tally, read_pause: float) -> str:
    from ingest.mqtt import MqttSubscriber

    async with MqttSubscriber(
        "127.0.0.1",
        port,
        client_id=client_id,
        clean_start=False,
        session_expiry=SESSION_EXPIRY,
        receive_maximum=RECEIVE_MAXIMUM,
        keepalive=30,
        read_pause=read_pause,
    ) as client:
        await client.subscribe([(GROUP_FILTER, 1)])
        tally.ready()
        async with asyncio.timeout(CHILD_TIMEOUT):
            async for batch in client.batches():
                for delivery in batch:
                    tally.record(delivery.payload)
                await asyncio.sleep(0)  # storage, as the worker awaits it per batch
                for delivery in batch:
                    delivery.ack()
                if tally.done:
                    break
    return "ok"


def sub_paho(port: int, client_id: str, tally: Tally) -> str:
    try:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
    except ImportError:
        return "not installed"
    connected, subscribed, finished = threading.Event(), threading.Event(), threading.Event()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
        manual_ack=True,
    )

    def on_connect(*_: Any) -> None:
        connected.set()

    def on_subscribe(*_: Any) -> None:
        subscribed.set()

    def on_message(client: Any, _userdata: Any, message: Any) -> None:
        tally.record(message.payload)
        # "Storage" is a no-op: nothing to wait for in a callback on paho's thread.
        client.ack(message.mid, message.qos)
        if tally.done:
            finished.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = SESSION_EXPIRY
    properties.ReceiveMaximum = RECEIVE_MAXIMUM
    client.connect("127.0.0.1", port, keepalive=30, clean_start=False, properties=properties)
    client.loop_start()
    try:
        if not connected.wait(10):
            return "no CONNACK"
        client.subscribe(GROUP_FILTER, qos=1)
        if not subscribed.wait(10):
            return "no SUBACK"
        tally.ready()
        finished.wait(CHILD_TIMEOUT)
    finally:
        client.disconnect()
        client.loop_stop()
    return "ok"


async def sub_gmqtt(port: int, client_id: str, tally: Tally) -> str:
    try:
        # Not in the project's lock: imported by name, typed as Any.
        gmqtt: Any = importlib.import_module("gmqtt")
    except ImportError:
        return "not installed"
    subscribed, finished = asyncio.Event(), asyncio.Event()
    client = gmqtt.Client(
        client_id,
        clean_session=False,
        optimistic_acknowledgement=False,
        receive_maximum=RECEIVE_MAXIMUM,
        session_expiry_interval=SESSION_EXPIRY,
    )

    async def on_message(_client: Any, _topic: str, payload: bytes, _qos: int, _p: Any) -> int:
        tally.record(payload)
        await asyncio.sleep(0)  # storage; gmqtt sends the PUBACK when this returns
        if tally.done:
            finished.set()
        return 0  # reason code: success

    def on_subscribe(*_: Any) -> None:
        subscribed.set()

    client.on_message = on_message
    client.on_subscribe = on_subscribe
    await client.connect("127.0.0.1", port, keepalive=30)
    try:
        client.subscribe(GROUP_FILTER, qos=1)
        async with asyncio.timeout(10):
            await subscribed.wait()
        tally.ready()
        async with asyncio.timeout(CHILD_TIMEOUT):
            await finished.wait()
        await asyncio.sleep(0)  # the last on_message's done-callback sends its PUBACK
    finally:
        await client.disconnect()
    return "ok"


def ready() -> None:
    print("ready", flush=True)


def run_subscriber(client: str, port: int, client_id: str, count: int, pause: float) -> None:
    tally = Tally(count)
    status: str
    try:
        if client == "own":
            status = asyncio.run(sub_own(port, client_id, tally, pause))
        elif client == "paho":
            status = sub_paho(port, client_id, tally)
        else:
            status = asyncio.run(sub_gmqtt(port, client_id, tally))
    except TimeoutError:
        status = "timed out"
    cpu = time.process_time() - tally.cpu_start
    if status == "not installed":
        ready()  # the parent waits for this line either way
    latencies = sorted(tally.latencies_ns)
    print(
        json.dumps(
            {
                "status": status,
                "received": tally.received,
                "cpu_s": cpu,
                "wall_s": (tally.last or time.perf_counter()) - tally.first,
                "p50_ms": latencies[len(latencies) // 2] / 1e6 if latencies else None,
                "p99_ms": latencies[int(len(latencies) * 0.99)] / 1e6 if latencies else None,
            }
        ),
        flush=True,
    )


# ------------------------------------------------------------------ publisher


def _string(value: bytes) -> bytes:
    return struct.pack("!H", len(value)) + value


def _packet(first: int, body: bytes) -> bytes:
    length, size = bytearray(), len(body)
    while True:
        size, digit = divmod(size, 128)
        length.append(digit | (0x80 if size else 0))
        if not size:
            return bytes([first]) + bytes(length) + body


def run_publisher(port: int, count: int, rate: int) -> None:
    """QoS 1 PUBLISHes over a raw socket (MQTT 3.1.1), paced or flat out; PUBACKs discarded."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        connect = _string(b"MQTT") + bytes([4, 0x02]) + struct.pack("!H", 60)
        sock.sendall(_packet(0x10, connect + _string(f"bench-pub-{uuid.uuid4().hex}".encode())))
        if sock.recv(4)[:1] != b"\x20":
            raise RuntimeError("no CONNACK")
        topics = [_string(f"devices/dev{index:04d}/telemetry".encode()) for index in range(DEVICES)]
        start, sent = time.perf_counter(), 0
        while sent < count:
            due = count if not rate else int((time.perf_counter() - start) * rate) + 1
            for seq in range(sent, min(count, due, sent + 200)):
                sock.sendall(
                    _packet(
                        0x32,
                        topics[seq % DEVICES]
                        + struct.pack("!H", seq % 0xFFFF + 1)
                        + _PAYLOAD % (time.monotonic_ns(), seq),
                    )
                )
                sent = seq + 1
                _discard(sock)
            if rate and sent < count:
                time.sleep(0.002)
        sock.sendall(b"\xe0\x00")  # DISCONNECT
        # Half-close and read to the end: closing with PUBACKs unread would send a reset,
        # and Mosquitto drops what it has not read yet ("out of memory" in its log).
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(30)
        while sock.recv(65536):
            pass


def _discard(sock: socket.socket) -> None:
    try:
        while sock.recv(65536, socket.MSG_DONTWAIT):
            pass
    except BlockingIOError:
        pass


# ------------------------------------------------------------------ parent


class Broker:
    """A throwaway Mosquitto on a free port (never the machine's own on 1883)."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        config = directory / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "max_queued_messages 200000\n"
            # As devstack and deploy configure it: without, Nagle holds each PUBLISH
            # for the subscriber's delayed TCP ACK, and clients without TCP_QUICKACK
            # (paho, gmqtt) would measure the broker's batching, not themselves.
            "set_tcp_nodelay true\n"
        )
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.process = subprocess.Popen(
            [binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port("127.0.0.1", self.port)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def child_command(*args: object) -> list[str]:
    return [sys.executable, "-m", "bench.mqtt_clients", "--child", *map(str, args)]


def run_case(port: int, client: str, pause: float, rate: int, count: int) -> dict[str, Any]:
    client_id = f"bench-{client}-{uuid.uuid4().hex[:8]}"
    command = child_command("sub", client, port, client_id, count, pause)
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as sub:
        assert sub.stdout is not None
        line = sub.stdout.readline()
        if line.strip() != "ready":
            sub.kill()
            raise RuntimeError(f"{client} subscriber not ready: {line!r}")
        publisher = subprocess.Popen(child_command("pub", port, count, rate), cwd=ROOT)
        out, _ = sub.communicate(timeout=CHILD_TIMEOUT + 30)
        publisher.wait(timeout=30)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    if result["status"] == "ok":
        result["redelivered"] = asyncio.run(redelivered(port, client_id))
    return result


async def redelivered(port: int, client_id: str) -> int:
    """Resume the session: what the broker sends again was never acknowledged."""
    from ingest.mqtt import MqttSubscriber

    count = 0
    async with MqttSubscriber(
        "127.0.0.1", port, client_id=client_id, clean_start=False, session_expiry=0
    ) as client:
        try:
            async with asyncio.timeout(1.0):
                async for batch in client.batches():
                    count += len(batch)
                    for delivery in batch:
                        delivery.ack()
        except TimeoutError:
            pass
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child)
        return
    load_before = list(os.getloadavg())
    samples: dict[tuple[str, int], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as directory:
        broker = Broker(Path(directory))
        try:
            for round_index in range(args.rounds):
                for rate, count in RATES:
                    # Rotate the clients' order each round: none always runs first.
                    shift = round_index % len(CLIENTS)
                    for label, client, pause in CLIENTS[shift:] + CLIENTS[:shift]:
                        result = run_case(broker.port, client, pause, rate, count)
                        samples.setdefault((label, rate), []).append(result)
                        print(f"round {round_index + 1}: {label} @ {rate or 'max'}: {result}")
        finally:
            broker.stop()
    report(samples, load_before)


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def report(samples: dict[tuple[str, int], list[dict[str, Any]]], load_before: list[float]) -> None:
    rows: list[dict[str, Any]] = []
    for (label, rate), runs in samples.items():
        ok = [run for run in runs if run["status"] == "ok" and run["received"]]
        row: dict[str, Any] = {"client": label, "offered_rate": rate, "runs": len(runs)}
        if not ok:
            row["status"] = runs[0]["status"]
        else:
            row |= {
                "status": "ok" if len(ok) == len(runs) else f"{len(runs) - len(ok)} failed",
                "cpu_us_per_message": _spread([r["cpu_s"] / r["received"] * 1e6 for r in ok]),
                "messages_per_second": _spread([r["received"] / r["wall_s"] for r in ok]),
                "p50_ms": _spread([r["p50_ms"] for r in ok]),
                "p99_ms": _spread([r["p99_ms"] for r in ok]),
                "redelivered_max": max(r.get("redelivered", 0) for r in ok),
            }
        rows.append(row)
    load_after = list(os.getloadavg())
    fmt: Callable[[dict[str, float], str], str] = lambda s, f: (  # noqa: E731
        f"{s['median']:{f}} ({s['min']:{f}}-{s['max']:{f}})"
    )
    table = [
        [
            row["client"],
            row["offered_rate"] or "max",
            fmt(row["cpu_us_per_message"], ".1f") if "cpu_us_per_message" in row else row["status"],
            fmt(row["messages_per_second"], ",.0f") if "messages_per_second" in row else "",
            fmt(row["p50_ms"], ".2f") if "p50_ms" in row else "",
            fmt(row["p99_ms"], ".2f") if "p99_ms" in row else "",
            row.get("redelivered_max", ""),
        ]
        for row in rows
    ]
    header = [
        "client",
        "offered msg/s",
        "CPU µs/msg median (min-max)",
        "msg/s",
        "p50 ms",
        "p99 ms",
        "redelivered",
    ]
    print_table("MQTT QoS 1 receive + ack after storage", header, table)
    print(f"\nload average before {load_before}, after {load_after}")
    path = write_results(
        "mqtt_clients",
        {
            "receive_maximum": RECEIVE_MAXIMUM,
            "filter": GROUP_FILTER,
            "load_average_before": load_before,
            "load_average_after": load_after,
            "rows": rows,
        },
    )
    print(f"wrote {path}")


def child(argv: list[str]) -> None:
    if argv[0] == "sub":
        client, port, client_id, count, pause = argv[1:6]
        run_subscriber(client, int(port), client_id, int(count), float(pause))
    else:
        run_publisher(int(argv[1]), int(argv[2]), int(argv[3]))


if __name__ == "__main__":
    main()
