"""The worker's /metrics endpoint: its IngestStats registry over HTTP."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from core.settings import Settings
from ingest.__main__ import metrics_server
from ingest.metrics import MetricsServerError, serve_metrics
from ingest.stats import IngestStats
from tests.net import free_port


async def get(url: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.get(url)


async def test_serve_ingest_metrics_dropped_by_reason() -> None:
    stats = IngestStats()
    stats.drop("bad_json", "device-1")
    port = free_port()
    with serve_metrics(stats.registry, host="127.0.0.1", port=port) as url:
        assert url == f"http://127.0.0.1:{port}/metrics"
        response = await get(url)
    assert response.status_code == 200
    assert 'ingest_messages_dropped_total{reason="bad_json"} 1.0' in response.text
    assert 'ingest_messages_dropped_total{reason="bad_topic"} 0.0' in response.text
    # Closed with the block.
    with pytest.raises(httpx.ConnectError):
        await get(url)


async def test_serve_ingest_metrics_port_in_use_error() -> None:
    stats = IngestStats()
    port = free_port()
    with (
        serve_metrics(stats.registry, host="127.0.0.1", port=port),
        pytest.raises(MetricsServerError),
        serve_metrics(stats.registry, host="127.0.0.1", port=port),
    ):
        pass


async def test_open_ingest_metrics_server_settings_port(settings: Settings) -> None:
    stats = IngestStats()
    stats.stored.inc(3)
    port = free_port()
    configured = settings.model_copy(
        update={"ingest_metrics_host": "127.0.0.1", "ingest_metrics_port": port}
    )
    with metrics_server(configured, stats) as url:
        assert url == f"http://127.0.0.1:{port}/metrics"
        response = await get(url)
    assert "ingest_readings_stored_total 3.0" in response.text


async def test_open_ingest_metrics_server_port_zero_disabled(settings: Settings) -> None:
    with metrics_server(
        settings.model_copy(update={"ingest_metrics_port": 0}), IngestStats()
    ) as url:
        assert url is None
        await asyncio.sleep(0)


def test_default_ingest_metrics_settings_loopback() -> None:
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (defaults.ingest_metrics_host, defaults.ingest_metrics_port) == ("127.0.0.1", 9101)
