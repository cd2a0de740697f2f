"""Real processes for tests: the API as `python -m api`, a private redis-server."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import IO

import httpx
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from core.settings import Settings
from tests.net import ROOT, free_port


def settings_environment(settings: Settings, **overrides: str) -> dict[str, str]:
    """The environment variables that recreate `settings` in a child process."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key in {"PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV"}
    }
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        # pydantic-settings reads lists as JSON.
        env[name.upper()] = json.dumps(value) if isinstance(value, list) else str(value)
    # A broker identity of its own (client ids are bound): an API child sharing the
    # in-process API's would take its MQTT session over, and each would keep kicking
    # the other off.
    env["API_INSTANCE"] = f"process-{uuid.uuid4().hex[:8]}"
    env.update(overrides)
    return env


@asynccontextmanager
async def api_process(
    settings: Settings, *, module: Sequence[str] = ("api",), **overrides: str
) -> AsyncIterator[str]:
    """`python -m api` (or `module` and its arguments) on a free port with `settings`;
    yields its base URL."""
    port = free_port()
    env = settings_environment(settings, API_PORT=str(port), API_HOST="127.0.0.1", **overrides)
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", *module], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            await _wait_until_answering(url, process, log)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=15)


async def _wait_until_answering(url: str, process: subprocess.Popen[bytes], log: IO[bytes]) -> None:
    async with httpx.AsyncClient(base_url=url) as client:
        for _ in range(300):
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"API exited: {log.read().decode()[-2000:]}")
            try:
                await client.get("/health", timeout=5)
                return
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    raise RuntimeError("API did not answer in 15 s")


class RedisProcess:
    """A private redis-server that a test may stop and start again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (scripts/ensure-services installs it)"
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        client = Redis.from_url(self.url)
        try:
            for _ in range(200):
                try:
                    await client.ping()
                    return
                except RedisConnectionError:
                    await asyncio.sleep(0.05)
            raise RuntimeError("private redis-server did not start in 10 s")
        finally:
            await client.aclose()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None
