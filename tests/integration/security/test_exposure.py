"""What the API shows about itself: introspection, GraphiQL, response headers, data files."""

from __future__ import annotations

import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from core.settings import Settings
from devstack.mosquitto import BrokerLayout, write_config
from devstack.run import load_secrets
from firmware.signing import load_signer
from tests.client import Api
from tests.integration.security.proxied import from_client, proxied_api
from tests.net import ROOT

SCHEMA_QUERY = "{ __schema { types { name } } }"
TYPE_QUERY = '{ __type(name: "Query") { fields { name } } }'
EXPECTED_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self' data:; connect-src 'self' ws: wss:; "
        "frame-ancestors 'none'"
    ),
}
HSTS = "strict-transport-security"


@pytest.fixture(scope="module")
async def hardened(settings: Settings) -> AsyncIterator[Api]:
    """As production runs it: no introspection, no GraphiQL, behind a proxy."""
    async with proxied_api(settings, GRAPHQL_INTROSPECTION="false", GRAPHIQL="false") as api:
        yield api


def test_settings_production_exposure_off() -> None:
    secrets = {"jwt_secret": "j" * 40, "device_credential_key": "d" * 40}
    production = Settings(_env_file=None, environment="production", **secrets)  # type: ignore[call-arg]
    assert (production.graphql_introspection, production.graphiql) == (False, False)
    development = Settings(_env_file=None, environment="development")  # type: ignore[call-arg]
    assert (development.graphql_introspection, development.graphiql) == (True, True)
    chosen = Settings(_env_file=None, environment="production", graphiql=True, **secrets)  # type: ignore[call-arg]
    assert chosen.graphiql is True


@pytest.mark.parametrize("query", [SCHEMA_QUERY, TYPE_QUERY], ids=["schema", "type"])
async def test_introspect_schema_disabled_refused(hardened: Api, query: str) -> None:
    result = await hardened.execute(query)
    assert set(result.codes) == {"BAD_USER_INPUT"}, result.body
    assert "introspection has been disabled" in result.message
    assert result.body.get("data") is None


async def test_introspect_typename_disabled_still_answers(hardened: Api) -> None:
    assert (await hardened.execute("{ __typename }")).data == {"__typename": "Query"}


async def test_introspect_schema_enabled_answers(api: Api) -> None:
    assert (await api.execute(SCHEMA_QUERY)).data["__schema"]["types"]


async def test_serve_graphiql_disabled_not_found(hardened: Api) -> None:
    response = await hardened.http.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert "graphiql" not in response.text.lower()


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/health"), ("POST", "/graphql"), ("GET", "/graphql"), ("GET", "/nowhere")],
)
async def test_respond_http_security_headers_present(
    api_server: str, method: str, path: str
) -> None:
    async with httpx.AsyncClient(base_url=api_server) as client:
        response = await client.request(
            method,
            path,
            json={"query": "{ __typename }"} if method == "POST" else None,
            headers={"Accept": "text/html"} if method == "GET" else {},
        )
    for name, value in EXPECTED_HEADERS.items():
        assert response.headers.get(name) == value, (name, response.status_code)
    # Plain HTTP, and a client that claims otherwise is not a trusted proxy.
    assert HSTS not in response.headers


async def test_respond_forged_forwarded_proto_no_hsts(api_server: str) -> None:
    async with httpx.AsyncClient(base_url=api_server) as client:
        response = await client.get("/health", headers={"X-Forwarded-Proto": "https"})
    assert HSTS not in response.headers


async def test_respond_https_behind_proxy_hsts(hardened: Api) -> None:
    over_tls = await hardened.http.get(
        "/health", headers={**from_client("203.0.113.9"), "X-Forwarded-Proto": "https"}
    )
    plain = await hardened.http.get("/health", headers=from_client("203.0.113.9"))
    assert over_tls.headers.get(HSTS) == "max-age=31536000"
    assert HSTS not in plain.headers
    assert over_tls.headers["x-frame-options"] == "DENY"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_create_data_dir_owner_only(tmp_path: Path) -> None:
    data = tmp_path / ".data"
    secrets_file = data / "secrets.env"
    key_file = data / "firmware-signing.key"
    load_secrets(secrets_file)
    development = Settings(_env_file=None, environment="development")  # type: ignore[call-arg]
    load_signer(development, development_key_file=key_file)
    layout = BrokerLayout(data / "mosquitto", 1884)
    write_config(layout)
    assert mode(data) == 0o700
    assert mode(layout.directory) == 0o700
    assert (mode(secrets_file), mode(key_file)) == (0o600, 0o600)


def test_create_data_dir_existing_open_tightened(tmp_path: Path) -> None:
    # A .data made by an older version (or by hand) with the umask's 0755.
    data = tmp_path / ".data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    load_secrets(data / "secrets.env")
    assert mode(data) == 0o700


def test_create_data_files_owner_only_after_owner_only_files(tmp_path: Path) -> None:
    # As devstack runs: the umask is set first, then children (the MongoDB stand-in's
    # SQLite engine, Mosquitto) create their files. A SQLite database stands for them.
    script = (
        "import sqlite3, sys, subprocess\n"
        "from core.private_dir import owner_only_files\n"
        "owner_only_files()\n"
        "subprocess.run([sys.executable, '-c', "
        "'import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute(\"create table t(x)\")', "
        "sys.argv[1]], check=True)\n"
    )
    database = tmp_path / "mongo.sqlite"
    subprocess.run([sys.executable, "-c", script, str(database)], check=True, cwd=ROOT)
    assert mode(database) == 0o600
