"""Structured logs: JSON lines with request/operation ids, secrets scrubbed, real processes."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from core.logging import (
    REDACTED,
    JsonFormatter,
    TextFormatter,
    accepted_request_id,
    operation_id,
    operation_name,
    request_id,
    secret_values,
)
from core.settings import Settings
from tests.contract import op
from tests.factories import PASSWORD, unique_email
from tests.net import ROOT, free_port
from tests.processes import settings_environment

HEX_ID = re.compile(r"[0-9a-f]{32}")
GET_SECRET = "getsecret" + uuid.uuid4().hex  # survives URL encoding as it is


@contextmanager
def captured(formatter: logging.Formatter) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A private logger writing through `formatter` into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"test.logging.{id(buffer)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield logger, buffer
    finally:
        logger.removeHandler(handler)


@contextmanager
def ids(request: str | None, operation: str | None, name: str | None) -> Iterator[None]:
    tokens = request_id.set(request), operation_id.set(operation), operation_name.set(name)
    try:
        yield
    finally:
        request_id.reset(tokens[0])
        operation_id.reset(tokens[1])
        operation_name.reset(tokens[2])


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every non-empty line parsed; fails on any line that is not one JSON object."""
    records = []
    for line in text.splitlines():
        if line.strip():
            record = json.loads(line)
            assert isinstance(record, dict), line
            records.append(record)
    return records


# ---------------------------------------------------------------- formatters


def test_format_json_record_with_ids_and_static_fields() -> None:
    formatter = JsonFormatter(static={"service": "api", "instance": "a:1"})
    with captured(formatter) as (logger, buffer), ids("req-1", "op-1", "Devices"):
        logger.info("device %s created for user %s", "d1", "u1")
    (record,) = json_lines(buffer.getvalue())
    assert record["message"] == "device d1 created for user u1"
    assert record["level"] == "INFO"
    assert record["logger"] == logger.name
    assert (record["service"], record["instance"]) == ("api", "a:1")
    assert (record["request_id"], record["operation_id"], record["operation"]) == (
        "req-1",
        "op-1",
        "Devices",
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["ts"])


def test_format_json_record_without_ids_leaves_them_out() -> None:
    with captured(JsonFormatter()) as (logger, buffer):
        logger.warning("plain")
    (record,) = json_lines(buffer.getvalue())
    assert not {"request_id", "operation_id", "operation"} & record.keys()


def test_format_json_exception_one_line() -> None:
    with captured(JsonFormatter()) as (logger, buffer):
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            logger.exception("failed")
    assert buffer.getvalue().count("\n") == 1
    (record,) = json_lines(buffer.getvalue())
    assert record["message"] == "failed"
    assert "ValueError: boom" in record["exc"]
    assert "Traceback" in record["exc"]


def test_format_text_record_appends_ids() -> None:
    with captured(TextFormatter()) as (logger, buffer), ids("req-9", None, None):
        logger.info("hello")
    line = buffer.getvalue().strip()
    assert line.endswith("INFO " + logger.name + ": hello [request_id=req-9]")


def test_scrub_secret_settings_in_message_and_exception() -> None:
    jwt_secret = "x" * 40
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        jwt_secret=SecretStr(jwt_secret),
        mqtt_password=SecretStr("broker-password-123"),
    )
    secrets = secret_values(settings)
    assert {jwt_secret, "broker-password-123"} <= set(secrets)
    for formatter in (JsonFormatter(secrets=secrets), TextFormatter(secrets=secrets)):
        with captured(formatter) as (logger, buffer):
            logger.warning("connecting with %s", "broker-password-123")
            try:
                raise RuntimeError(f"bad key {jwt_secret}")
            except RuntimeError:
                logger.exception("oops")
        text = buffer.getvalue()
        assert "broker-password-123" not in text
        assert jwt_secret not in text
        assert text.count(REDACTED) == 2


def test_accept_request_id_tame_tokens_only() -> None:
    assert accepted_request_id("proxy-42.a:b_c") == "proxy-42.a:b_c"
    for bad in (None, "", "two words", "x" * 65, "line\nbreak", '{"json": 1}'):
        assert HEX_ID.fullmatch(accepted_request_id(bad)), bad


# ---------------------------------------------------------------- processes


@asynccontextmanager
async def json_api(settings: Settings, log: Path) -> AsyncIterator[str]:
    """`python -m api` with LOG_FORMAT=json, its stdout and stderr into `log`."""
    port = free_port()
    env = settings_environment(
        settings, API_PORT=str(port), API_HOST="127.0.0.1", LOG_FORMAT="json", LOG_LEVEL="INFO"
    )
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "api"], cwd=ROOT, env=env, stdout=sink, stderr=sink
        )
        try:
            async with httpx.AsyncClient(base_url=url) as client, asyncio.timeout(20):
                while True:
                    assert process.poll() is None, log.read_text()[-2000:]
                    try:
                        await client.get("/health", timeout=5)
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.05)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=15)


async def test_log_api_process_json_lines_with_request_and_operation_ids(
    settings: Settings, tmp_path: Path
) -> None:
    log = tmp_path / "api.log"
    email = unique_email("logs")
    async with json_api(settings, log) as url, httpx.AsyncClient(base_url=url) as http:
        registered = await http.post(
            "/graphql",
            json={"query": op("Register"), "variables": {"email": email, "password": PASSWORD}},
            headers={"X-Request-ID": "req-register"},
        )
        assert registered.headers["x-request-id"] == "req-register"
        token = registered.json()["data"]["register"]["accessToken"]
        created = await http.post(
            "/graphql",
            json={"query": op("CreateDevice"), "variables": {"name": "n", "type": "t"}},
            headers={"Authorization": f"Bearer {token}", "X-Request-ID": "bad id!"},
        )
        assert created.status_code == 200, created.text
        generated = created.headers["x-request-id"]
        assert HEX_ID.fullmatch(generated)
        credentials = created.json()["data"]["createDevice"]["credentials"]
        # A GraphQL GET carries its variables in the query string; access lines drop it.
        leaky = await http.get(
            "/graphql",
            params={"query": op("Login"), "variables": f'{{"password": "{GET_SECRET}"}}'},
            headers={"X-Request-ID": "req-get"},
        )
        assert leaky.status_code in (400, 405), leaky.text
        device_id = created.json()["data"]["createDevice"]["device"]["id"]
        # The access log line is written after the response: wait for it.
        async with asyncio.timeout(10):
            while generated not in log.read_text() or "req-get" not in log.read_text():
                await asyncio.sleep(0.05)
    text = log.read_text()
    records = json_lines(text)
    assert all(record["service"] == "api" for record in records)

    (creation,) = [r for r in records if r["message"].startswith(f"device {device_id} created")]
    assert creation["request_id"] == generated
    assert creation["operation"] == "CreateDevice"
    assert HEX_ID.fullmatch(creation["operation_id"])
    access = [r for r in records if r["logger"] == "uvicorn.access"]
    assert {r.get("request_id") for r in access} >= {"req-register", generated}
    # Each operation had an id of its own.
    operations = {r["operation_id"] for r in records if "operation_id" in r}
    assert creation["operation_id"] in operations

    (get_line,) = [r for r in access if r.get("request_id") == "req-get"]
    assert "/graphql?" in get_line["message"]
    for secret in (
        GET_SECRET,
        PASSWORD,
        token,
        credentials["mqttPassword"],
        credentials["token"],
        *secret_values(settings),
    ):
        assert secret not in text


async def test_log_ingest_process_json_lines_name_the_worker(
    settings: Settings, tmp_path: Path
) -> None:
    log = tmp_path / "ingest.log"
    # No broker on that port: the worker logs its start, then keeps retrying.
    env = settings_environment(
        settings,
        LOG_FORMAT="json",
        INGEST_CLIENT_ID="ingest-logs-test",
        MQTT_PORT=str(free_port()),
    )
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "ingest"], cwd=ROOT, env=env, stdout=sink, stderr=sink
        )
        try:
            async with asyncio.timeout(20):
                while "starting" not in log.read_text():
                    assert process.poll() is None, log.read_text()[-2000:]
                    await asyncio.sleep(0.05)
        finally:
            process.terminate()
            process.wait(timeout=15)
    records = json_lines(log.read_text())
    starting = next(r for r in records if "starting" in r["message"])
    assert (starting["service"], starting["instance"]) == ("ingest", "ingest-logs-test")
    assert starting["logger"] == "ingest"
    for secret in secret_values(settings):
        assert secret not in log.read_text()


async def test_echo_request_id_http_and_websocket(api_server: str) -> None:
    async with httpx.AsyncClient(base_url=api_server) as http:
        kept = await http.get("/health", headers={"X-Request-ID": "probe-7"})
        fresh = await http.get("/health")
    assert kept.headers["x-request-id"] == "probe-7"
    assert HEX_ID.fullmatch(fresh.headers["x-request-id"])
    url = api_server.replace("http://", "ws://") + "/graphql"
    async with connect(
        url,
        subprotocols=[Subprotocol("graphql-transport-ws")],
        additional_headers={"X-Request-ID": "socket-1"},
    ) as ws:
        assert ws.response is not None
        assert ws.response.headers["x-request-id"] == "socket-1"
