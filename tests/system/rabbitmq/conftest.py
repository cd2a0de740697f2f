"""One private RabbitMQ node per session, asking the session's API over HTTP
(api/broker_auth.py); started only when these tests run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import aiomqtt
import pytest
from beanie import PydanticObjectId

from core.settings import Settings
from models.readings import Reading
from tests import rabbitmq
from tests.factories import CreatedDevice
from tests.rabbitmq import RabbitCluster, RabbitNode
from tests.system.faults.stack import Service, WorkerMetrics, eventually, start_worker


@pytest.fixture(scope="session")
def rabbit_node(
    api_server: str, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RabbitNode]:
    if not rabbitmq.available():
        pytest.skip("RabbitMQ is not installed on this machine")
    assert settings.broker_auth_secret is not None
    assert settings.broker_management_password is not None
    management_port = urlsplit(settings.broker_management_url).port
    assert management_port is not None
    node = RabbitNode(
        tmp_path_factory.mktemp("rabbitmq"),
        api_url=api_server,
        secret=settings.broker_auth_secret.get_secret_value(),
        management=(
            management_port,
            settings.broker_management_username,
            settings.broker_management_password.get_secret_value(),
        ),
    )
    try:
        node.start()
        yield node
    finally:
        node.stop()
        node.remove()


@pytest.fixture(scope="module")
def rabbit_cluster(
    api_server: str, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RabbitCluster]:
    """Three private nodes clustered (tests/rabbitmq.py), asking the session's API."""
    if not rabbitmq.available():
        pytest.skip("RabbitMQ is not installed on this machine")
    assert settings.broker_auth_secret is not None
    assert settings.broker_management_password is not None
    cluster = RabbitCluster(
        tmp_path_factory.mktemp("rabbitmq-cluster"),
        api_url=api_server,
        secret=settings.broker_auth_secret.get_secret_value(),
        management_user=settings.broker_management_username,
        management_password=settings.broker_management_password.get_secret_value(),
    )
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        cluster.remove()


def rabbit_client(
    node: RabbitNode, username: str, password: str, client_id: str | None = None
) -> aiomqtt.Client:
    """An MQTT 3.1.1 client of the node; its client id is its username by default."""
    return aiomqtt.Client(
        node.host,
        node.mqtt_port,
        username=username,
        password=password,
        identifier=client_id or username,
        timeout=10,
    )


async def login_refused(
    node: RabbitNode, username: str, password: str, client_id: str | None = None
) -> bool:
    """True when the node refuses the login in its CONNACK; False when it accepts."""
    try:
        async with rabbit_client(node, username, password, client_id):
            return False
    except aiomqtt.MqttCodeError as err:
        text = str(err).lower()
        assert "authori" in text or "password" in text or "identifier" in text, err
        return True


# ---------------------------------------------------------------- ingest workers (amqp)


def amqp_environment(nodes: Sequence[RabbitNode], first: int = 0) -> dict[str, str]:
    """A worker consuming the quorum queues of `nodes` (starting with `nodes[first]`,
    the next one after each lost connection), logged in as its ingest identity."""
    order = [*nodes[first:], *nodes[:first]]
    return {
        "INGEST_SOURCE": "amqp",
        "AMQP_URL": ",".join(f"amqp://{n.host}:{n.amqp_port}/?heartbeat=5" for n in order),
        "AMQP_PREFETCH": "50",
        "INGEST_RECONNECT_MAX_SECONDS": "1",
    }


@asynccontextmanager
async def amqp_workers(
    settings: Settings, nodes: Sequence[RabbitNode], log_dir: Path, count: int = 1
) -> AsyncIterator[list[tuple[Service, WorkerMetrics]]]:
    """`python -m ingest` workers 1..count (their ingest identities), worker n starting
    on node n (modulo), each connected and consuming when this yields."""
    started: list[tuple[Service, WorkerMetrics]] = []
    try:
        for n in range(1, count + 1):
            environment = amqp_environment(nodes, (n - 1) % len(nodes))
            started.append(await start_worker(settings, log_dir, worker=n, **environment))
        yield started
    finally:
        for service, _ in started:
            service.stop()


async def stored_numbers(device_id: str) -> list[int]:
    """The `n` of every reading stored for the device, sorted (duplicates kept)."""
    readings = await Reading.find(Reading.device_id == PydanticObjectId(device_id)).to_list()
    return sorted(int(value.value) for reading in readings for value in reading.values)


async def all_stored(devices: Sequence[CreatedDevice], per_device: int) -> bool:
    counts = [len(await stored_numbers(device.id)) for device in devices]
    return all(count >= per_device for count in counts)


async def assert_each_once(
    devices: Sequence[CreatedDevice], per_device: int, timeout: float = 60
) -> None:
    """Every device's readings 0..per_device-1 stored, each exactly once."""
    await eventually(
        lambda: all_stored(devices, per_device), timeout=timeout, what="every reading stored"
    )
    await asyncio.sleep(0.5)  # a duplicate would land by now
    for device in devices:
        assert await stored_numbers(device.id) == list(range(per_device)), device.id
