"""A device fleet simulator: `python -m simulator --devices N --rate R [--duration S]`.

It signs in to the API (registering its user the first time), creates its devices
or reuses them (rotating their credentials, which are shown only once), and
publishes realistic telemetry with each device's own MQTT identity, like a real
fleet would: status `online` on connect, a Last Will `offline`, QoS 1, and a log
line at start and every LOG_EVERY_READINGS readings.

With `--ota` the devices also take firmware updates: each subscribes to its
devices/{id}/ota, downloads an offered image with its device token (resuming with
Range when the link drops; `--ota-interrupt-after` drops it on purpose), checks
the SHA-256 and the Ed25519 signature against `firmwareSigningKey`, installs,
and reports progress (simulator.ota.OtaAgent); `--ota-fail-rate` makes that
share of installations fail.

Every device keeps a twin (simulator.twin.TwinAgent): it takes the desired `interval`
(seconds between its readings) and reports what it runs on devices/{id}/twin/reported.
Every device answers commands (simulator.commands: `reboot`, `setInterval`
{"seconds": n}, which changes its interval as the twin's desired one does; anything
else fails).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import random
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import httpx

from core.settings import get_settings
from simulator.commands import answer
from simulator.ota import Offer, OtaAgent
from simulator.twin import TwinAgent

logger = logging.getLogger(__name__)

DEVICE_PREFIX = "sim-"
# A log line on devices/{id}/logs at start and after every this many readings.
LOG_EVERY_READINGS = 20


class SimulatorError(RuntimeError):
    """The API refused something the simulator needs."""


@dataclass
class SimulatedDevice:
    id: str
    name: str
    username: str
    password: str
    token: str = ""
    ota: OtaAgent | None = None
    sent: int = 0
    temperature: float = field(default_factory=lambda: random.uniform(18, 26))
    humidity: float = field(default_factory=lambda: random.uniform(35, 60))
    battery: float = field(default_factory=lambda: random.uniform(70, 100))

    def reading(self) -> dict[str, Any]:
        """The next reading: slow random walks, a daily swing, a draining battery."""
        swing = 2.0 * math.sin(time.time() / 86400 * 2 * math.pi)
        self.temperature += random.gauss(0, 0.05)
        self.humidity = min(100.0, max(0.0, self.humidity + random.gauss(0, 0.2)))
        self.battery = max(0.0, self.battery - 0.001)
        return {
            "temperature": {"value": round(self.temperature + swing, 2), "unit": "°C"},
            "humidity": {"value": round(self.humidity, 1), "unit": "%"},
            "battery": {"value": round(self.battery, 2), "unit": "%"},
            "ts": int(time.time() * 1000),
        }

    def log_line(self) -> dict[str, Any]:
        """A status line, as firmware logs one now and then."""
        level = "WARNING" if self.battery < 20 else "INFO"
        message = f"{self.sent} readings sent, battery {self.battery:.1f}%"
        return {"level": level, "message": message, "ts": int(time.time() * 1000)}


class Api:
    """The few GraphQL operations the simulator needs."""

    def __init__(self, url: str) -> None:
        self._http = httpx.AsyncClient(base_url=url.rstrip("/"), timeout=30)
        self._token: str | None = None

    async def close(self) -> None:
        await self._http.aclose()

    async def call(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        response = await self._http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        body = response.json()
        if body.get("errors"):
            error = body["errors"][0]
            code = error.get("extensions", {}).get("code")
            raise SimulatorError(f"{code}: {error.get('message')}")
        return body["data"]  # type: ignore[no-any-return]

    async def sign_in(self, email: str, password: str) -> None:
        variables = {"input": {"email": email, "password": password}}
        try:
            data = await self.call(
                "mutation($input: LoginInput!) { login(input: $input) { accessToken } }", variables
            )
            self._token = data["login"]["accessToken"]
        except SimulatorError as err:
            if not str(err).startswith("UNAUTHENTICATED"):
                raise
            data = await self.call(
                "mutation($input: RegisterInput!) { register(input: $input) { accessToken } }",
                variables,
            )
            self._token = data["register"]["accessToken"]

    async def signing_key(self) -> str:
        """The public key firmware signatures are checked with."""
        data = await self.call("{ firmwareSigningKey }")
        return str(data["firmwareSigningKey"])

    async def fleet(self, count: int) -> list[SimulatedDevice]:
        """`count` devices named sim-0.., reused when they exist, with fresh credentials."""
        existing: dict[str, str] = {}
        after = None
        while True:
            data = await self.call(
                "query($after: String) { devices(first: 100, after: $after) { "
                "edges { node { id name } } pageInfo { hasNextPage endCursor } } }",
                {"after": after},
            )
            page = data["devices"]
            existing.update({e["node"]["name"]: e["node"]["id"] for e in page["edges"]})
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        devices = []
        for index in range(count):
            name = f"{DEVICE_PREFIX}{index}"
            if name in existing:
                data = await self.call(
                    "mutation($id: ID!) { rotateDeviceCredentials(id: $id) "
                    "{ mqttUsername mqttPassword token } }",
                    {"id": existing[name]},
                )
                credentials, device_id = data["rotateDeviceCredentials"], existing[name]
            else:
                data = await self.call(
                    "mutation($name: String!) { createDevice(input: {name: $name, type: "
                    '"simulator"}) { device { id } '
                    "credentials { mqttUsername mqttPassword token } } }",
                    {"name": name},
                )
                credentials = data["createDevice"]["credentials"]
                device_id = data["createDevice"]["device"]["id"]
            devices.append(
                SimulatedDevice(
                    id=device_id,
                    name=name,
                    username=credentials["mqttUsername"],
                    password=credentials["mqttPassword"],
                    token=credentials["token"],
                )
            )
        return devices


async def run_device(
    device: SimulatedDevice, *, host: str, port: int, interval: float, until: float
) -> None:
    """Connect as the device and publish one reading every `interval` seconds, or as its
    twin's desired `interval` says (and, with an OTA agent, take the firmware updates
    offered meanwhile)."""
    status = f"devices/{device.id}/status"
    will = aiomqtt.Will(status, b"offline", qos=1, retain=True)
    await asyncio.sleep(random.uniform(0, interval))  # do not all speak at once
    async with aiomqtt.Client(
        host,
        port,
        username=device.username,
        password=device.password,
        identifier=device.id,  # the contract: a device connects with its own id
        will=will,
    ) as client:
        logs = f"devices/{device.id}/logs"
        twin = TwinAgent(device.id, interval)
        await client.subscribe(twin.desired_topic, qos=1)
        # Subscribed before announcing itself: queued commands go out on "online".
        await client.subscribe(f"devices/{device.id}/commands/+", qos=1)
        offers: asyncio.Queue[aiomqtt.Message] = asyncio.Queue(maxsize=1)
        tasks = [asyncio.create_task(listen(device, client, twin, offers))]
        if device.ota is not None:
            await client.subscribe(f"devices/{device.id}/ota", qos=1)
            print(f"ota: {device.name} {device.id} listening", flush=True)
            tasks.append(asyncio.create_task(take_updates(device, device.ota, client, offers)))
        await client.publish(status, b"online", qos=1, retain=True)
        await client.publish(logs, f"boot ok: {device.name}", qos=1)
        await client.publish(twin.reported_topic, twin.report(), qos=1)
        try:
            next_at = time.monotonic()
            while time.monotonic() < until:
                await client.publish(
                    f"devices/{device.id}/telemetry", json.dumps(device.reading()), qos=1
                )
                device.sent += 1
                if device.sent % LOG_EVERY_READINGS == 0:
                    await client.publish(logs, json.dumps(device.log_line()), qos=1)
                next_at += twin.interval
                if await twin.sleep(next_at - time.monotonic()):
                    next_at = time.monotonic()  # a new interval: from now on
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await client.publish(status, b"offline", qos=1, retain=True)


async def listen(
    device: SimulatedDevice,
    client: aiomqtt.Client,
    twin: TwinAgent,
    offers: asyncio.Queue[aiomqtt.Message],
) -> None:
    """Every message to the device: twin documents (applied, then reported back),
    commands (answered; setInterval changes the twin's interval, reported back too), and
    OTA offers, handed to take_updates (one waits at most: a newer replaces it)."""
    async for message in client.messages:
        if not isinstance(message.payload, bytes):
            continue
        if message.topic.matches(twin.desired_topic):
            if twin.apply(message.payload):
                await client.publish(twin.reported_topic, twin.report(), qos=1)
        elif message.topic.matches(f"devices/{device.id}/commands/+"):
            try:
                command = json.loads(message.payload)
            except ValueError:
                command = None  # answered as an unknown command
            before = twin.interval
            reply = answer(twin, command)
            print(f"command: {device.name} {message.topic} -> {reply}", flush=True)
            await client.publish(f"{message.topic}/result", json.dumps(reply), qos=1)
            if twin.interval != before:
                twin.changed.set()
                await client.publish(twin.reported_topic, twin.report(), qos=1)
        elif device.ota is not None:
            if offers.full():
                offers.get_nowait()
            offers.put_nowait(message)


async def take_updates(
    device: SimulatedDevice,
    agent: OtaAgent,
    client: aiomqtt.Client,
    offers: asyncio.Queue[aiomqtt.Message],
) -> None:
    """Carry out each offer on the device's OTA topic, one at a time."""
    progress_topic = f"devices/{device.id}/ota/progress"

    async def publish(report: dict[str, Any]) -> None:
        await client.publish(progress_topic, json.dumps(report), qos=1)

    while True:
        message = await offers.get()
        if not isinstance(message.payload, bytes):
            continue
        offer = Offer.parse(message.payload)
        if offer is None:
            continue
        outcome = await agent.handle(offer, publish)
        if outcome != "IGNORED":
            resumed = f" (resumed at {agent.resumed_at})" if agent.resumed_at else ""
            print(
                f"ota: {device.name} {offer.update_id} {outcome} {offer.version}{resumed}",
                flush=True,
            )


async def simulate(args: argparse.Namespace) -> int:
    api = Api(args.api)
    downloads = httpx.AsyncClient(timeout=30)
    try:
        await api.sign_in(args.email, args.password)
        devices = await api.fleet(args.devices)
        if args.ota:
            public_key = await api.signing_key()
            for device in devices:
                device.ota = OtaAgent(
                    token=device.token,
                    api_url=args.api,
                    public_key=public_key,
                    http=downloads,
                    install_seconds=args.ota_install_seconds,
                    fail_rate=args.ota_fail_rate,
                    interrupt_after=args.ota_interrupt_after,
                )
    except BaseException:
        await downloads.aclose()
        raise
    finally:
        await api.close()
    interval = args.devices / args.rate
    until = time.monotonic() + (args.duration if args.duration else math.inf)
    print(
        f"simulating {len(devices)} devices at {args.rate:g} readings/s in all "
        f"(one every {interval:.2f} s each) on {args.mqtt_host}:{args.mqtt_port}",
        flush=True,
    )
    tasks = [
        asyncio.create_task(
            run_device(
                device, host=args.mqtt_host, port=args.mqtt_port, interval=interval, until=until
            )
        )
        for device in devices
    ]
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    reporter = asyncio.create_task(report_every(devices, started, args.report_every))
    waiter = asyncio.create_task(stop.wait())
    everything = asyncio.ensure_future(asyncio.gather(*tasks, return_exceptions=True))
    either: set[asyncio.Future[Any]] = {waiter, everything}
    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    for task in [*tasks, reporter, waiter]:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    failures = [r for r in results if isinstance(r, Exception)]
    total = sum(device.sent for device in devices)
    elapsed = time.monotonic() - started
    print(f"sent {total} readings from {len(devices)} devices in {elapsed:.1f} s", flush=True)
    for failure in failures[:5]:
        print(f"device failed: {failure}", flush=True)
    await downloads.aclose()
    return 1 if failures else 0


async def report_every(devices: list[SimulatedDevice], started: float, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        total = sum(device.sent for device in devices)
        print(f"{time.monotonic() - started:7.1f} s: {total} readings sent", flush=True)


def main() -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(
        prog="python -m simulator", description="Simulate a fleet of devices."
    )
    parser.add_argument("--devices", type=int, default=5)
    parser.add_argument("--rate", type=float, default=5.0, help="readings per second, in all")
    parser.add_argument("--duration", type=float, default=0, help="seconds; 0 runs until Ctrl-C")
    parser.add_argument("--api", default=f"http://{settings.api_host}:{settings.api_port}")
    parser.add_argument("--mqtt-host", default=settings.mqtt_host)
    parser.add_argument("--mqtt-port", type=int, default=settings.mqtt_port)
    parser.add_argument("--email", default="simulator@example.com")
    parser.add_argument("--password", default="simulator-password")
    parser.add_argument("--report-every", type=float, default=10.0)
    parser.add_argument("--ota", action="store_true", help="take firmware updates")
    parser.add_argument(
        "--ota-fail-rate", type=float, default=0.0, help="share of installations that fail"
    )
    parser.add_argument("--ota-install-seconds", type=float, default=2.0)
    parser.add_argument(
        "--ota-interrupt-after",
        type=int,
        default=0,
        help="drop each device's first download after this many bytes, then resume (Range)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    raise SystemExit(asyncio.run(simulate(args)))


if __name__ == "__main__":
    main()
