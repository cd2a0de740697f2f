"""GraphiQL in a real browser (headless Chromium): a person's journeys, offline, under CSP.

Each journey opens GraphiQL at /graphql, puts an access token in the Headers pane and
runs an operation the way a person would: a query over HTTP; a subscription over
graphql-transport-ws that shows a reading a device publishes over MQTT. After each,
every request the page made stayed on the API's origin, and the page logged no console
error, threw nothing and broke no Content-Security-Policy rule.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
import httpx
from redis.asyncio import Redis

from core.events import device_channel
from ingest.worker import IngestWorker
from tests.brokers import ManagedBroker
from tests.client import Api
from tests.factories import create_device, register
from tests.integration.live import wait_numsub
from tests.system.browser.conftest import Driver

# The policy the API sends (api/security_headers.py). Added by the driver when the
# server sends none, so the page is always tested under it.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self' ws: wss:; "
    "frame-ancestors 'none'"
)
# URLs that never leave the browser.
LOCAL_SCHEMES = {"data", "blob", "about"}


async def open_graphiql(driver: Driver, api_server: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=api_server) as client:
        served = await client.get("/graphql", headers={"Accept": "text/html"})
    csp = None if "content-security-policy" in served.headers else CSP
    opened = await driver("open", url=f"{api_server}/graphql", csp=csp)
    assert opened["status"] == 200
    assert opened["contentType"].startswith("text/html")
    assert opened["csp"], "the page ran without a Content-Security-Policy"
    return opened


def bearer(token: str) -> str:
    return json.dumps({"Authorization": f"Bearer {token}"}, indent=2)


def same_origin(url: str, api_server: str) -> bool:
    api, other = urlsplit(api_server), urlsplit(url)
    if other.scheme in LOCAL_SCHEMES:
        return True
    scheme = {"ws": "http", "wss": "https"}.get(other.scheme, other.scheme)
    return (scheme, other.netloc) == (api.scheme, api.netloc)


async def assert_clean(driver: Driver, api_server: str) -> dict[str, Any]:
    """Nothing left the API's origin, nothing failed, nothing was logged as an error."""
    report = await driver("report")
    urls = [r["url"] for r in report["requests"]] + report["websockets"]
    assert urls, "the page made no request at all"
    foreign = [url for url in urls if not same_origin(url, api_server)]
    assert not foreign, f"requests that left {api_server}: {foreign}"
    assert not report["cspViolations"], report["cspViolations"]
    assert not report["pageErrors"], report["pageErrors"]
    errors = [m for m in report["console"] if m["type"] == "error"]
    assert not errors, f"console errors: {errors}"
    assert not report["failed"], f"failed requests: {report['failed']}"
    assert not report["badResponses"], f"responses >= 400: {report['badResponses']}"
    return report


async def test_run_query_with_token_from_headers_pane(
    browser: Driver, api: Api, api_server: str
) -> None:
    session = await register(api)
    opened = await open_graphiql(browser, api_server)
    assert "GraphiQL" in opened["title"]
    # The explorer plugin lists the schema's fields (introspection went through).
    explorer = await browser("explorer")
    assert "me" in explorer["text"].split()
    await browser("headers", text=bearer(session.access_token))
    ran = await browser("run", query="{ me { email } }")
    assert ran["response"] == {"data": {"me": {"email": session.email}}}
    report = await assert_clean(browser, api_server)
    # Every script and stylesheet came from the API: the vendored files and ours.
    loaded = {urlsplit(r["url"]).path for r in report["requests"]}
    assert "/graphiql/graphiql-app.js" in loaded
    assert any(path.endswith("/graphiql.min.js") for path in loaded)
    # The token went with the query as the header the server reads.
    posts = [r for r in report["requests"] if r["method"] == "POST"]
    assert posts, "the query was not POSTed to /graphql"


async def test_query_without_token_shows_unauthenticated(browser: Driver, api_server: str) -> None:
    await open_graphiql(browser, api_server)
    ran = await browser("run", query="{ me { email } }")
    codes = [error["extensions"]["code"] for error in ran["response"]["errors"]]
    assert codes == ["UNAUTHENTICATED"]
    await assert_clean(browser, api_server)


async def test_subscription_shows_reading_a_device_publishes(
    browser: Driver,
    api: Api,
    api_server: str,
    redis: Redis,
    browser_worker: IngestWorker,
    managed_broker: ManagedBroker,
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    await open_graphiql(browser, api_server)
    await browser("headers", text=bearer(session.access_token))
    subscription = (
        f'subscription {{ readingAdded(deviceId: "{device.id}") '
        "{ deviceId values { metric value unit } } }"
    )
    subscribed = await browser("subscribe", query=subscription)
    ws_url = urlsplit(subscribed["websockets"][-1])
    assert (ws_url.scheme, ws_url.path) == ("ws", "/graphql")
    # The API listens on the device's channel once the subscription is live.
    await wait_numsub(redis, device_channel("readings", device.id), 1)
    # A real device: its own MQTT credentials, through the broker and the ingest worker.
    async with aiomqtt.Client(
        managed_broker.host,
        managed_broker.port,
        username=device.mqtt_username,
        password=device.mqtt_password,
        identifier=device.id,  # the contract: a device's client id is its own id
    ) as as_device:
        payload = {"temperature": {"value": 21.5, "unit": "°C"}}
        await as_device.publish(f"devices/{device.id}/telemetry", json.dumps(payload), qos=1)
    shown = await browser("response", contains="21.5")
    assert shown["response"] == {
        "data": {
            "readingAdded": {
                "deviceId": device.id,
                "values": [{"metric": "temperature", "value": 21.5, "unit": "°C"}],
            }
        }
    }
    await browser("stop")
    report = await assert_clean(browser, api_server)
    # graphql-transport-ws, with the Headers pane's token in connection_init's payload.
    inits = [m for m in report["messages"] if m["dir"] == "sent" and m["type"] == "connection_init"]
    assert inits, "no connection_init on the page's WebSocket"
    assert inits[-1]["payload"]["Authorization"] == f"Bearer {session.access_token}"
