"""services.broker_sessions is best effort: unset or unreachable, it reports False and
raises nothing (the RabbitMQ test closes real connections: tests/system/rabbitmq)."""

from __future__ import annotations

from core.settings import ApiSettings
from services.broker_sessions import close_device_connections
from tests.net import free_port


async def test_not_configured_does_nothing() -> None:
    settings = ApiSettings(_env_file=None)  # type: ignore[call-arg]
    assert await close_device_connections(settings, "a" * 24, "test") is False


async def test_unreachable_management_api_is_logged_not_raised() -> None:
    settings = ApiSettings(
        _env_file=None,  # type: ignore[call-arg]
        broker_management_url=f"http://127.0.0.1:{free_port()}",
        broker_management_username="admin",
        broker_management_password="secret",
    )
    assert await close_device_connections(settings, "a" * 24, "test") is False
