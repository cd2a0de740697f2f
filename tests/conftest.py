"""Session-wide real services: the MongoDB stand-in (or MONGODB_URL), Redis, the API.

Three tiers: tests/unit needs none of them; tests/integration runs on the stack served
in this process (an API by uvicorn on a free port, so HTTP and WebSocket clients speak
to the real thing); tests/system starts processes (APIs, workers, brokers, a browser).
The fixtures here start a service only when a test asks for it; the integration and
system tiers ask for `clean_state` in every test (their conftest). Every test runs on
one session event loop.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from api.app import Api as ApiApp
from api.app import create_app
from core.settings import Settings
from models import DOCUMENT_MODELS
from services.reading_hours import forget_keyed_since
from tests.brokers import ManagedBroker
from tests.client import Api
from tests.net import ROOT, free_port
from tests.servers import serving
from tests.smtp import SmtpServer

# Shared fixtures kept in their own modules.
pytest_plugins = ["tests.commands"]


def start_mongo_standin(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start the mongoeco wire server in its own process; return it and its URI."""
    ready = directory / f"mongo-{uuid.uuid4().hex}.uri"
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack.mongo_standin", "--port", "0", "--ready-file", str(ready)],
        cwd=ROOT,
    )
    for _ in range(300):
        if ready.exists() and ready.read_text():
            return process, ready.read_text()
        if process.poll() is not None:
            raise RuntimeError(f"mongo stand-in exited with {process.returncode}")
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("mongo stand-in did not start in 15 s")


@pytest.fixture(scope="session")
def mongodb_url() -> Iterator[str]:
    """MONGODB_URL when set (a real server), else a stand-in started for the session."""
    if url := os.environ.get("MONGODB_URL"):
        yield url
        return
    with tempfile.TemporaryDirectory() as directory:
        process, uri = start_mongo_standin(Path(directory))
        try:
            yield uri
        finally:
            process.terminate()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def managed_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedBroker]:
    """The project's own Mosquitto (dynsec on, anonymous off) for the session, with its
    TLS listener (tests/integration/broker/test_transports.py)."""
    broker = ManagedBroker(tmp_path_factory.mktemp("mosquitto"), tls=True)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd) the session's API sends its e-mail to."""
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def settings(mongodb_url: str, managed_broker: ManagedBroker, smtp_server: SmtpServer) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="test",
        mongodb_url=mongodb_url,
        mongodb_database=f"test_{uuid.uuid4().hex[:12]}",
        redis_url=os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
        # The API administers the managed broker's dynsec and provisions the ingest identity.
        mqtt_host=managed_broker.host,
        mqtt_port=managed_broker.port,
        mqtt_username=managed_broker.admin_username,
        mqtt_password=managed_broker.admin_password,
        mqtt_ingest_username="iot-ingest",
        mqtt_ingest_password=secrets.token_urlsafe(24),
        # Its broker client ids (iot-api-<instance>...): each API process needs its own.
        api_instance=f"test-{uuid.uuid4().hex[:8]}",
        device_credential_key=secrets.token_urlsafe(32),
        # Brokers asking over HTTP (api/broker_auth.py; tests/system/rabbitmq).
        broker_auth_secret=secrets.token_urlsafe(24),
        # Its management API, where that node runs (tests/system/rabbitmq): rotated and
        # deleted devices' connections are closed there. Elsewhere nothing listens.
        broker_management_url=f"http://127.0.0.1:{free_port()}",
        broker_management_username="iot-broker-admin",
        broker_management_password=secrets.token_urlsafe(24),
        # Cheap hashing keeps the suite fast; production keeps the defaults.
        argon2_time_cost=1,
        argon2_memory_cost_kib=64,
        # Workers spawned by tests serve no metrics: a fixed port would collide.
        ingest_metrics_port=0,
        # Many tests pump hundreds of messages through one device; the per-device limit
        # is on by default and tested in tests/integration/security/test_device_isolation.py.
        ingest_device_rate_per_second=0,
        # Tests store readings of past years: the platform keeps them. The deleter's pass
        # runs at start-up and then hourly; retention tests run passes of their own.
        reading_retention_days=20_000,
        retention_interval_seconds=3600,
        # E-mail to the session's SMTP server (tests/smtp.py), with quick polls and retries.
        smtp_host="127.0.0.1",
        smtp_port=smtp_server.port,
        smtp_tls="none",
        smtp_timeout_seconds=2,
        email_outbox_poll_seconds=0.25,
        email_retry_first_seconds=0.2,
        email_retry_max_seconds=1,
        email_reminder_check_seconds=0.5,
        public_base_url="http://console.test",
    )


@pytest.fixture(scope="session")
def api_app(settings: Settings) -> ApiApp:
    """The session's API application: its lifespan's state is app.state.platform."""
    return create_app(settings)


@pytest.fixture(scope="session")
async def api_server(settings: Settings, api_app: ApiApp) -> AsyncIterator[str]:
    """The API served by uvicorn on a free port; yields its base URL."""
    async with serving(settings, port=free_port(), app=api_app) as url:
        yield url


@pytest.fixture(scope="session")
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def clean_state(api_server: str, redis: Redis) -> AsyncIterator[None]:
    """Every test starts with empty collections (indexes kept) and an empty Redis db."""
    for model in DOCUMENT_MODELS:
        await model.get_pymongo_collection().delete_many({})
    # The readings' key marker went with platform_markers: decided again at first use.
    forget_keyed_since()
    await redis.flushdb()
    yield


@pytest.fixture
async def api(api_server: str) -> AsyncIterator[Api]:
    async with Api(api_server) as client:
        yield client
