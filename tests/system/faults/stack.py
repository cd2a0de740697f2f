"""Real processes for the fault suite: `python -m api` and `python -m ingest`, with their
logs and the worker's metrics, and what a device and a dashboard do against them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.settings import Settings
from services.broker_identities import ingest_identities
from tests.brokers import ManagedBroker
from tests.factories import CreatedDevice
from tests.net import ROOT, free_port
from tests.processes import settings_environment

# Long variants, opt-in: `SOAK=1 pytest -m soak tests/system/faults`.
SOAK = (
    pytest.mark.soak,
    pytest.mark.skipif(os.environ.get("SOAK") != "1", reason="soak variant: SOAK=1 to run"),
)


async def eventually[T](
    check: Callable[[], Awaitable[T]], *, timeout: float, what: str, every: float = 0.05
) -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while not (result := await check()):
                await asyncio.sleep(every)
    except TimeoutError:
        raise AssertionError(f"not within {timeout} s: {what}") from None
    return result


@dataclass
class Service:
    """One child process and the file its output goes to."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def spawn(cls, name: str, module: str, env: dict[str, str], log_dir: Path) -> Service:
        log = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", module],
                cwd=ROOT,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        return cls(name, process, log)

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def assert_alive(self) -> None:
        assert self.alive(), (
            f"{self.name} exited ({self.process.returncode}):\n{self.output()[-3000:]}"
        )

    def kill(self) -> None:
        """SIGKILL: no goodbye to anyone."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def broker_environment(broker: ManagedBroker) -> dict[str, str]:
    """The API's settings for administering `broker`."""
    return {
        "MQTT_HOST": broker.host,
        "MQTT_PORT": str(broker.port),
        "MQTT_USERNAME": broker.admin_username,
        "MQTT_PASSWORD": broker.admin_password,
    }


async def start_api(settings: Settings, log_dir: Path, **env: str) -> tuple[Service, str]:
    """`python -m api` on a free port; returns it once /health answers (ok or not)."""
    port = free_port()
    # Broker client ids of its own (they are bound): not another API process's.
    env = {"API_INSTANCE": f"fault-{uuid.uuid4().hex[:8]}", **env}
    service = Service.spawn(
        "api",
        "api",
        settings_environment(settings, API_HOST="127.0.0.1", API_PORT=str(port), **env),
        log_dir,
    )
    url = f"http://127.0.0.1:{port}"

    async def answering() -> bool:
        service.assert_alive()
        try:
            async with httpx.AsyncClient(base_url=url) as http:
                await http.get("/health", timeout=5)
        except httpx.TransportError:
            return False
        return True

    try:
        await eventually(answering, timeout=30, what="the API answers /health")
    except BaseException:
        service.stop()
        raise
    return service, url


async def api_healthy(url: str) -> bool:
    async with httpx.AsyncClient(base_url=url) as http:
        try:
            return (await http.get("/health", timeout=5)).status_code == 200
        except httpx.TransportError:
            return False


class WorkerMetrics:
    """The worker's Prometheus samples, read over HTTP."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"

    async def samples(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        async with httpx.AsyncClient() as http:
            text = (await http.get(self.url, timeout=5)).text
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    async def value(self, name: str, **labels: str) -> float:
        """The sum of `name`'s samples that carry `labels`."""
        wanted = set(labels.items())
        return sum(
            value
            for (sample, sample_labels), value in (await self.samples()).items()
            if sample == name and wanted <= sample_labels
        )

    async def connected(self) -> bool:
        try:
            return await self.value("ingest_mqtt_connected") == 1
        except httpx.TransportError:
            return False


def worker_environment(settings: Settings, metrics_port: int, *, worker: int = 1) -> dict[str, str]:
    """A worker logging in as the first ingest identity the API provisions (whose ACL
    names the API's share group: the worker keeps that one), with its bound client id."""
    identity = ingest_identities(settings)[worker - 1]
    return {
        "MQTT_USERNAME": identity.username,
        "MQTT_PASSWORD": identity.password,
        "INGEST_CLIENT_ID": identity.client_id,
        "INGEST_METRICS_PORT": str(metrics_port),
        "INGEST_BATCH_DELAY_MS": "5",
        "INGEST_DEVICE_CACHE_SECONDS": "0.5",
        "INGEST_STATUS_FLUSH_SECONDS": "0.2",
    }


async def start_worker(
    settings: Settings, log_dir: Path, *, worker: int = 1, **env: str
) -> tuple[Service, WorkerMetrics]:
    """`python -m ingest`; returns it once it is connected and subscribed.

    `env` as for the API (broker, Redis, MongoDB); the worker's own identity, client id,
    share group and metrics port are set here.
    """
    port = free_port()
    environment = {**env, **worker_environment(settings, port, worker=worker)}
    service = Service.spawn(
        "worker", "ingest", settings_environment(settings, **environment), log_dir
    )
    metrics = WorkerMetrics(port)

    async def connected() -> bool:
        service.assert_alive()
        return await metrics.connected()

    try:
        await eventually(connected, timeout=30, what="the worker connects to the broker")
    except BaseException:
        service.stop()
        raise
    return service, metrics


@asynccontextmanager
async def device_client(
    broker: ManagedBroker, device: CreatedDevice
) -> AsyncIterator[aiomqtt.Client]:
    """The device itself, logged in with its own broker credentials."""
    async with aiomqtt.Client(
        broker.host,
        broker.port,
        username=device.mqtt_username,
        password=device.mqtt_password,
        identifier=device.id,  # the contract: a device's client id is its own id
        timeout=10,
    ) as client:
        yield client


async def publish_reading(client: aiomqtt.Client, device_id: str, number: int) -> None:
    await client.publish(f"devices/{device_id}/telemetry", json.dumps({"n": number}), qos=1)


class MongoStandIn:
    """The MongoDB stand-in on a fixed port over an SQLite file: stopped and started
    again, it comes back where it was, with its data."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.data = directory / "mongo.sqlite"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    async def start(self) -> None:
        ready = self.directory / f"ready-{uuid.uuid4().hex}"
        command = [sys.executable, "-m", "devstack.mongo_standin", "--port", str(self.port)]
        with (self.directory / "mongo-standin.log").open("ab") as log:
            self.process = subprocess.Popen(
                [*command, "--data", str(self.data), "--ready-file", str(ready)],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        async def listening() -> bool:
            assert self.process is not None and self.process.poll() is None, "stand-in exited"
            return ready.exists() and bool(ready.read_text())

        await eventually(listening, timeout=30, what="the MongoDB stand-in listens")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=15)
            self.process = None
