"""A platform of the fault suite's own: a private Redis and broker, `python -m api` and
`python -m ingest` on them (MongoDB: the session's). The tests break its parts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from core.settings import Settings
from tests.brokers import ManagedBroker
from tests.processes import RedisProcess
from tests.system.faults.stack import (
    Service,
    WorkerMetrics,
    api_healthy,
    broker_environment,
    eventually,
    start_api,
    start_worker,
)


@dataclass
class Stack:
    settings: Settings
    redis: RedisProcess
    broker: ManagedBroker
    # The environment of every process of the stack (broker, Redis).
    env: dict[str, str]
    log_dir: Path
    api: Service
    url: str
    worker: Service
    metrics: WorkerMetrics
    extra: list[Service] = field(default_factory=list)

    async def start_api(self) -> tuple[Service, str]:
        """Another API process on the same stack (stopped with it)."""
        service, url = await start_api(self.settings, self.log_dir, **self.env)
        self.extra.append(service)
        return service, url

    async def healthy(self) -> None:
        """Every part up: API healthy (MongoDB, Redis, broker), worker connected."""
        self.api.assert_alive()
        self.worker.assert_alive()
        await eventually(lambda: api_healthy(self.url), timeout=30, what="the API is healthy")
        await eventually(self.metrics.connected, timeout=30, what="the worker is connected")


@pytest.fixture(scope="package")
async def fault_stack(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    log_dir = tmp_path_factory.mktemp("fault-logs")
    redis = RedisProcess()
    await redis.start()
    broker = ManagedBroker(tmp_path_factory.mktemp("fault-broker"))
    broker.start()
    env = {
        **broker_environment(broker),
        "REDIS_URL": redis.url,
        # One worker, subscribed without a share group: Mosquitto 2.0.11 restores a plain
        # subscription of a persistent session after a restart, but not a shared one
        # (see README, "Fault and abuse suites").
        "INGEST_SHARE_GROUP": "",
    }
    services: list[Service] = []
    try:
        api, url = await start_api(settings, log_dir, **env)
        services.append(api)
        # The API provisions the worker's broker identity once it is connected.
        await eventually(lambda: api_healthy(url), timeout=30, what="the API is healthy")
        worker, metrics = await start_worker(settings, log_dir, **env)
        services.append(worker)
        stack = Stack(settings, redis, broker, env, log_dir, api, url, worker, metrics)
        yield stack
        services.extend(stack.extra)
    finally:
        for service in reversed(services):
            service.stop()
        broker.stop()
        redis.stop()


@pytest.fixture
async def stack(fault_stack: Stack) -> Stack:
    """The shared stack, checked healthy before the test breaks something."""
    await fault_stack.healthy()
    return fault_stack
