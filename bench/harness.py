"""What the benchmarks stand on: the stand-in database, a managed broker, devices.

Everything is a real process on this machine: mongoeco's wire server (unless
MONGODB_URL is set), Mosquitto with dynamic security, Redis (REDIS_URL or the
local one), and the workers under test as their own processes, so their CPU
time can be read from /proc.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.mosquitto import (
    BrokerLayout,
    init_dynsec,
    mosquitto_command,
    wait_for_port,
    write_config,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class Stack:
    mongodb_url: str
    redis_url: str
    broker: BrokerLayout
    admin_password: str
    database: str

    @property
    def mqtt_port(self) -> int:
        return self.broker.port


@contextmanager
def stack() -> Iterator[Stack]:
    """Start the stand-in (unless MONGODB_URL) and a managed broker; stop them after."""
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as directory:
        try:
            mongodb_url = os.environ.get("MONGODB_URL")
            if mongodb_url is None:
                ready = Path(directory) / "mongo.uri"
                processes.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "devstack.mongo_standin",
                            "--port",
                            "0",
                            "--ready-file",
                            str(ready),
                        ],
                        cwd=ROOT,
                        stdout=subprocess.DEVNULL,
                    )
                )
                deadline = time.monotonic() + 20
                while not (ready.exists() and ready.read_text()):
                    if time.monotonic() > deadline:
                        raise RuntimeError("the MongoDB stand-in did not start")
                    time.sleep(0.05)
                mongodb_url = ready.read_text()
            layout = BrokerLayout(Path(directory) / "mosquitto", free_port())
            admin_password = secrets.token_urlsafe(16)
            write_config(layout)
            init_dynsec(layout, "bench-admin", admin_password)
            processes.append(subprocess.Popen(mosquitto_command(layout), stderr=subprocess.DEVNULL))
            wait_for_port("127.0.0.1", layout.port)
            yield Stack(
                mongodb_url=mongodb_url,
                redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/10"),
                broker=layout,
                admin_password=admin_password,
                database=f"bench_{uuid.uuid4().hex[:8]}",
            )
        finally:
            for process in reversed(processes):
                process.terminate()
                try:
                    # A stand-in holding a million readings (8 GB) takes longer to exit.
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "database": "MongoDB at MONGODB_URL"
        if os.environ.get("MONGODB_URL")
        else "mongoeco wire stand-in (memory engine)",
    }


def write_results(name: str, results: dict[str, Any]) -> Path:
    """bench/results/<name>.json, with the machine it ran on."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {
        "benchmark": name,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        **results,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def print_table(title: str, header: list[str], rows: list[list[object]]) -> None:
    """A plain text table."""
    cells = [header, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for index, row in enumerate(cells):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))
