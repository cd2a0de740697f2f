"""What the Node-driven tests need: Node.js, this folder's node_modules, Debian's Chromium.

`make test` installs all three (scripts/ensure-services: chromium; `make browser-deps`:
`npm ci` here). When one is missing anyway, CI (CI=true) fails the test with what to
run; elsewhere the test is skipped with the same words.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from redis.asyncio import Redis

from core.settings import Settings
from ingest.worker import IngestWorker
from tests.brokers import ManagedBroker
from tests.integration.ingest.conftest import (
    IngestIdentities,
    provision_identities,
    settings_for_worker,
    start_worker,
    stop_worker,
)
from tests.net import ROOT

NODE_DIR = ROOT / "tests" / "system" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
NODE_MAJOR = 20  # playwright-core's engines (package.json)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> NoReturn:
    """Fail in CI, skip elsewhere: a CI run must not pass by running nothing."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: these tests must run)", pytrace=False)
    pytest.skip(reason)


def require_node() -> str:
    """The node binary, with this folder's packages installed (`make browser-deps`)."""
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed: run scripts/ensure-services (Node.js 20+)")
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    major = version.removeprefix("v").split(".")[0]
    if not major.isdigit() or int(major) < NODE_MAJOR:
        unavailable(f"node {version or '(no version)'} is too old: Node.js {NODE_MAJOR}+ needed")
    if not (NODE_DIR / "node_modules" / ".package-lock.json").exists():
        unavailable(
            "tests/system/browser/node_modules is missing: run `make browser-deps` "
            "(npm ci --no-audit --no-fund in tests/system/browser)"
        )
    return node


def require_chromium() -> Path:
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(
            f"{CHROMIUM} is missing: run scripts/ensure-services (apt-get install chromium)"
        )
    return CHROMIUM


class Driver:
    """tests/system/browser/driver.mjs: Chromium, started once, driven a command at a time."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def _line(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            raise AssertionError(f"the browser driver exited ({await self._stderr()})")
        message: dict[str, Any] = json.loads(line)
        return message

    async def _stderr(self) -> str:
        assert self.process.stderr is not None
        try:
            data = await asyncio.wait_for(self.process.stderr.read(), 5)
        except TimeoutError:
            return "no stderr"
        return data.decode(errors="replace").strip() or "no stderr"

    async def ready(self) -> dict[str, Any]:
        return await self._line(timeout=30)

    async def __call__(self, cmd: str, timeout: float = 45, **arguments: Any) -> dict[str, Any]:
        """Run one command; its answer, or AssertionError with the driver's error."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"cmd": cmd, **arguments}).encode() + b"\n")
        await self.process.stdin.drain()
        answer = await self._line(timeout)
        if not answer.get("ok"):
            page = json.dumps(answer.get("page"), indent=1)
            raise AssertionError(f"browser: {cmd} failed: {answer.get('error')}\npage: {page}")
        return answer

    async def close(self) -> None:
        if self.process.returncode is None:
            # Gone already, or hung: killed below.
            with contextlib.suppress(AssertionError, TimeoutError, ConnectionError):
                await self("close", timeout=15)
        try:
            await asyncio.wait_for(self.process.wait(), 15)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


async def start_driver(script: str, *arguments: str) -> Driver:
    """A driver script of this folder (driver.mjs, console.mjs), once it said it is ready."""
    node = require_node()
    require_chromium()
    process = await asyncio.create_subprocess_exec(
        node,
        script,
        *arguments,
        cwd=NODE_DIR,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "CHROMIUM": str(CHROMIUM)},
    )
    driver = Driver(process)
    try:
        ready = await driver.ready()
    except (AssertionError, TimeoutError) as err:
        await driver.close()
        raise AssertionError(f"Chromium did not start: {err}") from err
    assert ready.get("ready"), ready
    return driver


@pytest.fixture(scope="module")
async def browser(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Driver]:
    """Headless Chromium for the module's tests; screenshots of each step go to a
    temporary folder (its path is in the driver's ready line)."""
    screenshots = tmp_path_factory.mktemp("screenshots")
    driver = await start_driver("driver.mjs", "--screenshots", str(screenshots))
    try:
        yield driver
    finally:
        await driver.close()


@pytest.fixture(scope="module")
async def console_browser() -> AsyncIterator[Driver]:
    """Headless Chromium driving the web console (console.mjs)."""
    driver = await start_driver("console.mjs")
    try:
        yield driver
    finally:
        await driver.close()


@pytest.fixture(scope="module")
async def browser_identities(managed_broker: ManagedBroker) -> IngestIdentities:
    """An ingest worker's identity of this suite's own on the API's broker."""
    return await provision_identities(managed_broker, prefix=f"browser-{uuid.uuid4().hex[:8]}")


@pytest.fixture
async def browser_worker(
    settings: Settings,
    redis: Redis,
    managed_broker: ManagedBroker,
    browser_identities: IngestIdentities,
) -> AsyncIterator[IngestWorker]:
    """An ingest worker on the API's broker, so a device's readings reach subscribers."""
    worker, task = await start_worker(
        settings_for_worker(settings, managed_broker, browser_identities), redis
    )
    try:
        yield worker
    finally:
        await stop_worker(task)
