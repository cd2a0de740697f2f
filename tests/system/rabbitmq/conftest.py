"""One private RabbitMQ node per session, asking the session's API over HTTP
(api/broker_auth.py); started only when these tests run."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import aiomqtt
import pytest

from core.settings import Settings
from tests import rabbitmq
from tests.rabbitmq import RabbitNode


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
