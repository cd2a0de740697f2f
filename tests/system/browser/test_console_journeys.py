"""The web console in a real browser (headless Chromium): a person's journeys, live.

One person, from an empty platform: opens the API's root (redirected to /console/),
registers, creates a device and reads its credentials once, publishes as the device
over MQTT (aiomqtt, the device's own credentials, through the broker and the ingest
worker) and sees each value on the device's chart without a reload, adds a threshold
rule, raises an alert with a reading over it and acknowledges it on the Alerts page
(arrived live, with the badge), then builds and saves a dashboard (line chart, gauge,
table, map) whose widgets follow new readings. Afterwards: every request stayed on the API's origin (the console works
offline), nothing broke the Content-Security-Policy, no console error, nothing failed.
A second session signs in with the keyboard alone, reads the fleet at phone width,
loses the network and sees the live socket come back by itself.

Measured and printed (not asserted): MQTT publish to point drawn on the chart, p50/p99
over LATENCY_SAMPLES readings; the first load's transferred bytes (asserted <= 300 KB).

CONSOLE_SCREENSHOTS=<dir> saves the main pages as PNGs there (docs/console/ is made so).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
from redis.asyncio import Redis

from core.events import device_channel
from ingest.worker import IngestWorker
from tests.brokers import ManagedBroker
from tests.client import Api
from tests.contract import op
from tests.factories import PASSWORD, Session, create_device, register
from tests.integration.firmware.helpers import next_offer
from tests.integration.live import wait_numsub
from tests.system.browser.conftest import Driver

LATENCY_SAMPLES = 40
FIRST_LOAD_BUDGET = 300 * 1024
LOCAL_SCHEMES = {"data", "blob", "about"}
EMAIL = "operator@example.com"


def same_origin(url: str, api_server: str) -> bool:
    api, other = urlsplit(api_server), urlsplit(url)
    if other.scheme in LOCAL_SCHEMES:
        return True
    scheme = {"ws": "http", "wss": "https"}.get(other.scheme, other.scheme)
    return (scheme, other.netloc) == (api.scheme, api.netloc)


def socket_attempt(entry: dict[str, Any]) -> bool:
    """A WebSocket connection refused while the test took the network away."""
    return "WebSocket connection to" in entry.get("text", "") or str(
        entry.get("url", "")
    ).startswith("ws")


async def assert_clean(
    driver: Driver, api_server: str, *, network_lost: bool = False
) -> dict[str, Any]:
    """Nothing left the API's origin, nothing failed, nothing was logged as an error
    (but the live socket's attempts to reconnect while the network was away)."""
    report = await driver("report")
    if network_lost:
        report["console"] = [m for m in report["console"] if not socket_attempt(m)]
        report["failed"] = [f for f in report["failed"] if not socket_attempt(f)]
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


async def screenshot(driver: Driver, name: str, *, full_page: bool = False) -> None:
    folder = os.environ.get("CONSOLE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        path = str(Path(folder).resolve() / f"{name}.png")
        await driver("screenshot", path=path, fullPage=full_page)


async def text(driver: Driver, selector: str) -> str:
    answer = await driver(
        "eval", expression=f"document.querySelector({json.dumps(selector)})?.textContent ?? null"
    )
    return str(answer["value"])


async def wait_subscribed(driver: Driver, operation: str, since: int = 0) -> int:
    """Until the page's socket sent a `subscribe` for the operation (after frame `since`)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        messages = (await driver("report"))["messages"]
        for message in messages[since:]:
            query = (
                (message.get("payload") or {}).get("query", "")
                if isinstance(message.get("payload"), dict)
                else ""
            )
            if (
                message["dir"] == "sent"
                and message.get("type") == "subscribe"
                and operation in query
            ):
                return len(messages)
        await asyncio.sleep(0.1)
    raise AssertionError(f"no subscribe for {operation} on the page's socket")


class Device:
    """The device, publishing over MQTT as itself."""

    def __init__(self, broker: ManagedBroker, device_id: str, username: str, password: str) -> None:
        self.client = aiomqtt.Client(
            broker.host, broker.port, username=username, password=password, identifier=device_id
        )
        self.topic = f"devices/{device_id}/telemetry"

    async def __aenter__(self) -> Device:
        await self.client.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.__aexit__(*exc)

    async def publish(self, **values: float) -> float:
        """Publishes one reading; the wall-clock time (ms) just before it left."""
        sent = time.time() * 1000
        await self.client.publish(self.topic, json.dumps(values), qos=1)
        return sent


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def test_console_journeys(
    console_browser: Driver,
    api: Api,
    api_server: str,
    redis: Redis,
    browser_worker: IngestWorker,
    managed_broker: ManagedBroker,
    record_property: Any,
) -> None:
    page = console_browser
    # The API's root leads to the console, which asks a stranger to sign in.
    opened = await page("open", url=f"{api_server}/")
    assert urlsplit(opened["url"]).path == "/console/"
    assert opened["csp"] and "'unsafe-inline'" not in opened["csp"], opened["csp"]
    await page("wait", role="heading", name="Sign in")
    first_load = await page("report")
    loaded = sum(r.get("bytes", 0) for r in first_load["requests"])
    record_property("first_load_bytes", loaded)
    print(
        f"\nconsole first load: {len(first_load['requests'])} requests, {loaded} bytes transferred"
    )
    assert loaded <= FIRST_LOAD_BUDGET, first_load["requests"]
    await screenshot(page, "sign-in")

    # Register (the first account of the platform: an ADMIN).
    await page("click", role="button", name="Create an account instead")
    await page("fill", label="E-mail", value=EMAIL)
    await page("fill", label="Password", value=PASSWORD)
    await page("click", role="button", name="Create account")
    await page("wait", role="heading", name="Fleet")
    await page(
        "until", expression="document.getElementById('connection').dataset.state === 'online'"
    )
    assert await text(page, "#user") == EMAIL

    # A device, its credentials shown once.
    await page("click", role="button", name="New device")
    await page("fill", within="#new-device", label="Name", value="Greenhouse 1")
    await page("fill", within="#new-device", label="Type", value="sensor")
    await page("click", role="button", name="Create device")
    await page("wait", selector="[data-secret=mosquitto]")
    device_id = await text(page, "[data-secret=id]")
    username = await text(page, "[data-secret=username]")
    password = await text(page, "[data-secret=password]")
    # The broker's address as devices reach it (the API cannot know it): the line follows.
    broker = f"{managed_broker.host}:{managed_broker.port}"
    await page("fill", within="#new-device", label="Broker address (host:port)", value=broker)
    line = await text(page, "[data-secret=mosquitto]")
    assert line.startswith(f"mosquitto_pub -h {managed_broker.host} -p {managed_broker.port} ")
    assert f"-u '{username}'" in line and f"-P '{password}'" in line and f"-i {device_id}" in line
    assert f"devices/{device_id}/telemetry" in line
    await page("wait", selector=f"tr[data-device-id='{device_id}']", text="Greenhouse 1")
    await screenshot(page, "fleet-new-device")

    async with Device(managed_broker, device_id, username, password) as device:
        # The fleet's row takes the device's readings live: its values and last seen.
        await wait_subscribed(page, "ConsoleReadingAdded")
        await asyncio.sleep(0.5)  # the API subscribes on Redis once the frame arrives
        await device.publish(temperature=19.5)
        fleet_row = f"tr[data-device-id='{device_id}']"
        await page("wait", selector=f"{fleet_row} .values .chip", text="temperature 19.5")

        # The device page: its chart takes each reading live.
        await page("click", role="link", name="Open the device")
        await page("wait", role="heading", name="Greenhouse 1")
        await wait_numsub(redis, device_channel("readings", device_id), 1, timeout=15)
        await device.publish(temperature=20.5, humidity=40)
        await page(
            "until",
            expression="document.querySelector('figure[data-metric=temperature]')?.dataset.last === '20.5'",
        )
        await page("wait", selector="figure[data-metric=humidity]")
        # Latency: MQTT publish -> the point drawn on the chart (console:drawn).
        sent: dict[float, float] = {}
        for index in range(LATENCY_SAMPLES):
            value = round(21 + index * 0.1, 1)
            sent[value] = await device.publish(temperature=value)
            await asyncio.sleep(0.1)
        last = max(sent)
        await page(
            "until",
            expression=f"document.querySelector('figure[data-metric=temperature]').dataset.last === '{last}'",
        )
        drawn = {
            point["value"]: point["drawnAt"]
            for point in (await page("drawn"))["drawn"]
            if point["metric"] == "temperature"
        }
        latencies = [drawn[value] - at for value, at in sent.items()]
        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        record_property("mqtt_to_chart_ms_p50", p50)
        record_property("mqtt_to_chart_ms_p99", p99)
        print(
            f"MQTT publish -> chart point: n={len(latencies)} p50={p50:.0f} ms "
            f"p99={p99:.0f} ms max={max(latencies):.0f} ms mean={statistics.mean(latencies):.0f} ms"
        )
        points = await page(
            "eval",
            expression="Number(document.querySelector('figure[data-metric=temperature]').dataset.points)",
        )
        assert points["value"] >= LATENCY_SAMPLES + 1
        await page("wait", selector="#section-readings tbody tr", text=f"temperature {last}")
        await screenshot(page, "device")

        # A threshold rule, then a reading over it: the alert arrives live on Alerts.
        await page("fill", within="#section-rules", label="Metric", value="temperature")
        await page("fill", within="#section-rules", label="Maximum", value="30")
        await page("click", role="button", name="Add threshold rule")
        await page("wait", selector="#section-rules tbody tr", text="temperature above 30")
        # Where the device is (for the dashboard's map), from its Details.
        await page("fill", within="#section-details", label="Latitude", value="52.37")
        await page("fill", within="#section-details", label="Longitude", value="4.89")
        await page("click", role="button", name="Save details")
        await page("wait", selector="#section-details .info", text="Saved.")
        frames = len((await page("report"))["messages"])
        await page("click", role="link", name="Alerts")
        await page("wait", role="heading", name="Alerts")
        await page("wait", selector=".count", text="0 alerts")
        await wait_subscribed(page, "ConsoleAlertRaised", since=frames)
        await asyncio.sleep(0.5)  # the API subscribes on Redis once the frame arrives
        await device.publish(temperature=35.5)
        # (The anomaly detector may raise one of its own on the jump: the badge counts all.)
        row = await page("wait", selector="tbody tr.arrived", text="above max 30", timeout=20_000)
        assert "Greenhouse 1" in row["text"] and "active" in row["text"]
        active_rows = "document.querySelectorAll('tbody tr[data-state=ACTIVE]').length"
        badge = "Number(document.getElementById('alert-badge').dataset.count || 0)"
        await page("until", expression=f"{badge} === {active_rows}")
        active = (await page("eval", expression=badge))["value"]
        assert active >= 1
        await screenshot(page, "alerts")
        await page("click", role="button", name="Acknowledge: temperature = 35.5, above max 30")
        # Acknowledged: it leaves the Active list, and the badge counts one fewer.
        await page(
            "until", expression=f"{badge} === {active - 1} && {active_rows} === {active - 1}"
        )
        await page("select", label="State", value="ACKNOWLEDGED")
        await page("wait", selector="tbody tr[data-state=ACKNOWLEDGED]", text="above max 30")
        token = (
            await page(
                "eval",
                expression="JSON.parse(sessionStorage.getItem('iotplatform.console.session')).accessToken",
            )
        )["value"]
        stored = await api.execute(op("Alerts"), {"state": "ACKNOWLEDGED"}, token=token)
        acknowledged = [edge["node"] for edge in stored.data["alerts"]["edges"]]
        assert [(a["deviceId"], a["value"]) for a in acknowledged] == [(device_id, 35.5)]

        # A dashboard: a line chart and a gauge, saved, following new readings.
        await page("click", role="link", name="Dashboards")
        await page("fill", label="Name", value="Greenhouse")
        await page("click", role="button", name="Create dashboard")
        await page("wait", role="heading", name="Edit dashboard")
        await page("fill", within=".add-widget", label="Title", value="Temperature")
        await page("fill", within=".add-widget", label="Metrics", value="temperature")
        await page("check", within=".add-widget", label="Greenhouse 1")
        await page("click", role="button", name="Add widget")
        await page("select", within=".add-widget", label="Kind", value="gauge")
        await page("fill", within=".add-widget", label="Title", value="Now")
        await page("fill", within=".add-widget", label="Minimum", value="0")
        await page("fill", within=".add-widget", label="Maximum", value="50")
        await page("check", within=".add-widget", label="Greenhouse 1")
        await page("click", role="button", name="Add widget")
        await page("select", within=".add-widget", label="Kind", value="table")
        await page("fill", within=".add-widget", label="Title", value="Latest")
        await page("fill", within=".add-widget", label="Rows", value="5")
        await page("click", role="button", name="Add widget")
        await page("select", within=".add-widget", label="Kind", value="map")
        await page("fill", within=".add-widget", label="Title", value="Where")
        await page("click", role="button", name="Add widget")
        await page("click", role="button", name="Save dashboard")
        await page("wait", selector=".editor .info", text="Saved.")
        saved = await api.execute(op("Dashboards"), {}, token=token)
        (dashboard,) = saved.data["dashboards"]
        assert dashboard["name"] == "Greenhouse"
        widgets = dashboard["config"]["widgets"]
        assert [(w["kind"], w["devices"], w.get("metrics")) for w in widgets] == [
            ("line_chart", [device_id], ["temperature"]),
            ("gauge", [device_id], ["temperature"]),
            ("table", [device_id], ["temperature"]),
            ("map", [device_id], ["temperature"]),
        ]
        # Each in the first free place of the 12-column grid: two by two.
        assert [(w["position"]["x"], w["position"]["y"]) for w in widgets] == [
            (0, 0),
            (6, 0),
            (0, 4),
            (6, 4),
        ]
        await page("click", role="button", name="Close editor")
        await page(
            "until",
            expression="document.querySelector('.widget-gauge figure')?.dataset.last === '35.5'",
        )
        # The map has no tiles (offline): the device is a named dot on the plane.
        await page(
            "until",
            expression="document.querySelector('.widget-map svg text')?.textContent.startsWith('Greenhouse 1')",
        )
        assert (
            await page(
                "eval", expression="document.querySelectorAll('.widget-map svg circle').length"
            )
        )["value"] == 1
        await wait_subscribed(page, "ConsoleReadingAdded", since=0)
        await asyncio.sleep(0.5)
        await device.publish(temperature=24.25)
        await page(
            "until",
            expression="document.querySelector('.widget-gauge figure').dataset.last === '24.25'",
        )
        await page(
            "until",
            expression="document.querySelector('.widget-line_chart figure').dataset.last === '24.25'",
        )
        await page("wait", selector=".widget-table tbody tr", text="temperature 24.25")
        rows = await page(
            "eval", expression="document.querySelectorAll('.widget-table tbody tr').length"
        )
        assert rows["value"] == 5  # its limit: the newest five readings
        await screenshot(page, "dashboard")
    await assert_clean(page, api_server)


async def test_console_keyboard_sign_in_and_phone_width(
    console_browser: Driver, api: Api, api_server: str
) -> None:
    """Signing in with the keyboard alone; the fleet readable at a phone's width."""
    page = console_browser
    registered = await api.execute(op("Register"), {"email": EMAIL, "password": PASSWORD})
    owner = Session(
        user_id=registered.data["register"]["user"]["id"],
        email=EMAIL,
        role="ADMIN",
        access_token=registered.data["register"]["accessToken"],
        refresh_token=registered.data["register"]["refreshToken"],
    )
    for name in ("Greenhouse 1", "Cold store"):
        await create_device(api, owner, name=name, type="sensor")
    await page("open", url=f"{api_server}/console/", width=390, height=844)
    await page("wait", role="heading", name="Sign in")
    # The e-mail field has focus; Tab reaches the password; Enter submits.
    focused = (await page("focused"))["value"]
    assert focused["label"] == "E-mail", focused
    await page("type", text=EMAIL)
    await page("press", key="Tab")
    await page("type", text="not the password")
    await page("press", key="Enter")
    # A refusal in words, with the contract's code beside them.
    refused = await page("wait", selector=".error[data-code=UNAUTHENTICATED]")
    assert "do not match an account" in refused["text"], refused
    await page("fill", label="Password", value=PASSWORD)
    await page("press", key="Enter")
    await page("wait", role="heading", name="Fleet")
    # Its requests answered (a reload would abort one in flight).
    await page("wait", selector=".count", text="2 devices")
    await page("until", expression="document.getElementById('alert-badge').dataset.count === '0'")
    # Tokens are refreshed before they expire: a tab whose access token has 30 s left
    # rotates both on load (refreshToken) and goes on.
    stored = "JSON.parse(sessionStorage.getItem('iotplatform.console.session'))"
    before = (await page("eval", expression=stored))["value"]
    await page(
        "eval",
        expression=(
            f"sessionStorage.setItem('iotplatform.console.session', JSON.stringify("
            f"{{...{stored}, expiresAt: Date.now() + 30000}}))"
        ),
    )
    await page("reload")
    await page("wait", selector=".count", text="2 devices")
    after = (await page("eval", expression=stored))["value"]
    assert after["refreshToken"] != before["refreshToken"]
    assert after["accessToken"] != before["accessToken"]
    assert after["expiresAt"] > before["expiresAt"] - 60_000
    await page("wait", selector=".count", text="2 devices")
    await page("wait", selector="tbody tr", text="Cold store")
    # Nothing wider than the screen but the tables' own scrolling regions.
    overflow = await page(
        "eval", expression="document.documentElement.scrollWidth - window.innerWidth"
    )
    assert overflow["value"] <= 0, overflow
    await screenshot(page, "fleet-phone")
    # The live socket: the indicator says when it is lost, and it comes back by itself,
    # subscribing again to what the page shows.
    state = "document.getElementById('connection').dataset.state"
    await page("until", expression=f"{state} === 'online'")
    frames = len((await page("report"))["messages"])
    await page("offline", on=True)
    await page("until", expression=f"{state} !== 'online'")
    assert "Live" not in await text(page, "#connection")
    await page("offline", on=False)
    await page("until", expression=f"{state} === 'online'", timeout=30_000)
    await wait_subscribed(page, "ConsoleDeviceStatusChanged", since=frames)
    # An ADMIN (the platform's first account) has the firmware page: no images yet.
    await page("click", role="link", name="Firmware")
    await page("wait", role="heading", name="Firmware")
    await page("wait", selector="tbody tr", text="No images yet.")
    # Sign out ends the session: the sign-in page again, nothing kept in the tab.
    await page("click", role="button", name="Sign out")
    await page("wait", role="heading", name="Sign in")
    kept = await page("eval", expression="sessionStorage.getItem('iotplatform.console.session')")
    assert kept["value"] is None
    await assert_clean(page, api_server, network_lost=True)


async def test_console_firmware_rollout_progress_live(
    console_browser: Driver,
    api: Api,
    api_server: str,
    browser_worker: IngestWorker,
    managed_broker: ManagedBroker,
) -> None:
    """An ADMIN uploads an image, starts a rollout, and watches the device's progress
    arrive live as the device (over MQTT) reports it."""
    page = console_browser
    admin = await register(api, "admin@example.com")
    device = await create_device(api, admin, name="Pump 7", type="pump")
    await page("open", url=f"{api_server}/console/")
    await page("fill", label="E-mail", value=admin.email)
    await page("fill", label="Password", value=PASSWORD)
    await page("click", role="button", name="Sign in")
    await page("wait", role="heading", name="Fleet")
    await page("click", role="link", name="Firmware")
    await page("wait", role="heading", name="Firmware")
    image = b"\x7fELF console test image " * 64
    await page(
        "upload",
        label="Image file",
        filename="pump-2.1.0.bin",
        base64=base64.b64encode(image).decode(),
    )
    await page("fill", label="Version", value="2.1.0")
    await page("fill", label="Device type", value="pump")
    await page("click", role="button", name="Upload")
    await page("wait", selector=".info", text="Image stored and signed.")
    await page("wait", selector="tbody tr", text="2.1.0")
    async with aiomqtt.Client(
        managed_broker.host,
        managed_broker.port,
        username=device.mqtt_username,
        password=device.mqtt_password,
        identifier=device.id,
    ) as as_device:
        await as_device.subscribe(f"devices/{device.id}/ota", qos=1)
        await page("check", label="Pump 7")
        await page("click", role="button", name="Start rollout")
        await page("wait", selector=".rollout tbody tr", text="Pump 7")
        offer = await next_offer(as_device)
        assert offer["version"] == "2.1.0"
        row = ".rollout tbody tr[data-state={}]"
        await page("wait", selector=row.format("DISPATCHED"), text="Pump 7")
        progress = f"devices/{device.id}/ota/progress"
        report = {"updateId": offer["updateId"], "state": "DOWNLOADING", "progress": 40}
        await as_device.publish(progress, json.dumps(report), qos=1)
        shown = await page("wait", selector=row.format("DOWNLOADING"), text="40%")
        assert "downloading" in shown["text"]
        await screenshot(page, "firmware", full_page=True)
        report = {"updateId": offer["updateId"], "state": "SUCCEEDED", "progress": 100}
        await as_device.publish(progress, json.dumps(report), qos=1)
        await page("wait", selector=row.format("SUCCEEDED"), text="100%")
        await page("wait", selector=".rollout p", text="succeeded")
    await assert_clean(page, api_server)
