"""`/health` reports each service and answers 503 while one is down."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from core.settings import Settings
from tests.net import free_port
from tests.processes import RedisProcess, api_process


@pytest.fixture
def private_redis() -> Iterator[RedisProcess]:
    redis = RedisProcess()
    try:
        yield redis
    finally:
        redis.stop()


async def test_report_health_all_services_ok(api_server: str) -> None:
    async with httpx.AsyncClient(base_url=api_server) as client:
        response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "services": {"mongodb": "ok", "redis": "ok", "mqtt": "ok"},
    }


async def test_report_health_redis_down_503_then_recovers(
    settings: Settings, private_redis: RedisProcess
) -> None:
    await private_redis.start()
    async with (
        api_process(settings, REDIS_URL=private_redis.url) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        assert (await client.get("/health")).status_code == 200
        private_redis.stop()
        down = await client.get("/health")
        assert down.status_code == 503
        assert down.json() == {
            "status": "degraded",
            "services": {"mongodb": "ok", "redis": "down", "mqtt": "ok"},
        }
        await private_redis.start()
        back = await client.get("/health")
        assert back.status_code == 200
        assert back.json()["services"]["redis"] == "ok"


async def test_report_health_mqtt_down_503(settings: Settings) -> None:
    async with (
        api_process(settings, MQTT_PORT=str(free_port())) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        response = await client.get("/health")
    assert response.status_code == 503
    assert response.json()["services"] == {"mongodb": "ok", "redis": "ok", "mqtt": "down"}
