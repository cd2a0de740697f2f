"""API processes for the fan-out and query benchmarks: start, probe, measure.

Each API is a real `python -m api` on its own port, against the benchmark's
database and a Redis of the benchmark's own (pub/sub channels are server-wide:
a shared Redis would mix the benchmark's events with other processes' traffic).
The APIs administer the stack's broker, as in production.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from beanie import PydanticObjectId
from pydantic import SecretStr

from bench.harness import ROOT, Stack, free_port
from core.settings import Settings
from models.accounts import Role, User
from services.tokens import issue_access_token

BENCH_JWT_SECRET = "bench-only-jwt-secret-" + "0123456789" * 4
TOKEN_TTL_SECONDS = 24 * 3600
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class ApiProcess:
    url: str
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid


def bench_settings(stack: Stack) -> Settings:
    """Settings that mint tokens the benchmark's APIs accept, on its database."""
    return Settings(
        _env_file=None,
        mongodb_url=stack.mongodb_url,
        mongodb_database=stack.database,
        jwt_secret=SecretStr(BENCH_JWT_SECRET),
        access_token_ttl_seconds=TOKEN_TTL_SECONDS,
    )


def access_token(settings: Settings, user_id: PydanticObjectId) -> str:
    return issue_access_token(str(user_id), settings).token


def new_user(email: str, *, admin: bool = False) -> User:
    """A user document (never logs in: the benchmark mints its tokens)."""
    return User(
        id=PydanticObjectId(),
        email=email,
        password_hash="-",  # noqa: S106 - no password login in the benchmark
        role=Role.ADMIN if admin else Role.USER,
    )


@contextmanager
def private_redis() -> Iterator[str]:
    """A redis-server of the benchmark's own on a free port; its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (scripts/ensure-services)")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the private redis-server did not start") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def api_environment(stack: Stack, redis_url: str, **extra: str) -> dict[str, str]:
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    env.update(
        ENVIRONMENT="development",
        MONGODB_URL=stack.mongodb_url,
        MONGODB_DATABASE=stack.database,
        REDIS_URL=redis_url,
        # The stack's broker, as its dynsec admin (reconciles the devices at start-up).
        MQTT_HOST="127.0.0.1",
        MQTT_PORT=str(stack.mqtt_port),
        MQTT_USERNAME="bench-admin",
        MQTT_PASSWORD=stack.admin_password,
        JWT_SECRET=BENCH_JWT_SECRET,
        ACCESS_TOKEN_TTL_SECONDS=str(TOKEN_TTL_SECONDS),
        LOG_LEVEL="WARNING",
        API_HOST="127.0.0.1",
    )
    env.update(extra)
    return env


@contextmanager
def api_processes(
    stack: Stack,
    redis_url: str,
    count: int,
    *,
    module: Sequence[str] = ("api",),
    **extra: str,
) -> Iterator[list[ApiProcess]]:
    """`count` APIs on free ports, started one after the other; stopped on exit.

    `module`: what `python -m` runs, and its arguments (a baseline: bench.baseline_api)."""
    apis: list[ApiProcess] = []
    try:
        for _ in range(count):
            port = free_port()
            # Each its own broker identity (client ids are bound): sharing one, two APIs
            # would keep taking each other's MQTT session.
            env = api_environment(
                stack, redis_url, API_PORT=str(port), API_INSTANCE=f"bench-{port}", **extra
            )
            command = [sys.executable, "-m", *module]
            if profile := os.environ.get("BENCH_PROFILE"):  # a path: profile each API's CPU
                command = [sys.executable, "-m", "bench.profiled", f"{profile}.api-{port}", *module]
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
            apis.append(ApiProcess(f"http://127.0.0.1:{port}", process))
            # One at a time: each reconciles the broker with the devices at start-up
            # (before it answers), and two at once race on the same identities.
            wait_answering(apis[-1])
        yield apis
    finally:
        for api in apis:
            # SIGINT lets a profiled API write its profile (uvicorn re-raises SIGTERM).
            api.process.send_signal(signal.SIGINT)
        for api in apis:
            api.process.wait(timeout=15)


def wait_answering(api: ApiProcess, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if api.process.poll() is not None:
            raise RuntimeError(f"the API at {api.url} exited with {api.process.returncode}")
        try:
            with HTTP.open(f"{api.url}/health", timeout=2):
                return
        except urllib.error.HTTPError:
            return  # 503 while a dependency is away: it answers all the same
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the API at {api.url} did not answer") from None
            time.sleep(0.05)


def metric(api: ApiProcess, name: str) -> float:
    """The sum of one metric's samples at the API's /metrics."""
    with HTTP.open(f"{api.url}/metrics", timeout=30) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in {" ", "{"}:
            total += float(line.rsplit(" ", 1)[1])
    return total


def rss_kib(pid: int) -> int:
    """Resident memory of a process, KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def graphql(
    url: str, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
) -> dict[str, Any]:
    """One operation over HTTP; the decoded body."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(  # noqa: S310 - a local API
        f"{url}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers=headers,
    )
    with HTTP.open(request, timeout=60) as response:
        body: dict[str, Any] = json.loads(response.read())
        return body


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]
