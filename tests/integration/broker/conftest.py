"""Real MQTT clients against the managed Mosquitto, and private brokers a test may break."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiomqtt
import pytest

from core.settings import Settings
from services.broker_identities import ingest_identities
from tests.brokers import ManagedBroker

DELIVERY_TIMEOUT = 5.0


@asynccontextmanager
async def mqtt(
    broker: ManagedBroker,
    username: str | None,
    password: str | None,
    client_id: str | None = None,
) -> AsyncIterator[aiomqtt.Client]:
    """A connected MQTT 3.1.1 client (the broker refuses a bad login with MqttCodeError).

    Its client id is `client_id`, by default its username (a device's is bound to it)."""
    async with aiomqtt.Client(
        broker.host,
        broker.port,
        username=username,
        password=password,
        identifier=client_id or username or None,
        timeout=5,
    ) as client:
        yield client


async def login_refused(broker: ManagedBroker, username: str | None, password: str | None) -> bool:
    """True when the broker refuses this login in its CONNACK; False when it accepts it."""
    try:
        async with mqtt(broker, username, password):
            return False
    except aiomqtt.MqttCodeError as err:
        assert "authori" in str(err).lower() or "password" in str(err).lower(), err
        return True


def granted(reason_codes: object) -> list[bool]:
    """A SUBACK's reason codes as accepted / refused."""
    assert isinstance(reason_codes, list | tuple), reason_codes
    return [not code.is_failure for code in reason_codes]


async def nothing_more(client: aiomqtt.Client, seconds: float = 0.5) -> bool:
    """True when no further message arrives within `seconds`."""
    try:
        await next_message(client, seconds)
    except TimeoutError:
        return True
    return False


async def next_message(
    client: aiomqtt.Client, timeout: float = DELIVERY_TIMEOUT
) -> aiomqtt.Message:
    async with asyncio.timeout(timeout):
        return await anext(aiter(client.messages))


async def closed_by_broker(client: aiomqtt.Client, timeout: float = DELIVERY_TIMEOUT) -> bool:
    """True once the broker drops this client's session; False if it stays open."""
    try:
        async with asyncio.timeout(timeout):
            async for _ in client.messages:
                pass
    except aiomqtt.MqttError:
        return True
    except TimeoutError:
        return False
    return True


def ingest_login(settings: Settings) -> tuple[str, str, str]:
    """The first ingest worker's identity and bound client id, as the API provisions it."""
    first = ingest_identities(settings)[0]
    return first.username, first.password, first.client_id


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[ManagedBroker]:
    """A broker of this test only (same admin login scheme as the session one)."""
    broker = ManagedBroker(tmp_path / "mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
