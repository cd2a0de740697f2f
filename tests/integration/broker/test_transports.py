"""MQTT over TCP, TLS, WebSockets and WebSockets over TLS: one broker, the same rules.

The session broker has a TLS listener (its certificates from devstack.certs); Debian's
Mosquitto has no websockets, so WebSocket clients go through `python -m devstack.ws_bridge`
as `make run` starts it. On every transport a device logs in only as itself, with its own
client id, publishes only to its own topics and receives only its own.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import ssl
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from core.dynsec import connect_dynsec
from core.settings import Settings
from devstack.certs import ensure_certificates
from devstack.mosquitto import wait_for_port
from devstack.ws_bridge import MAX_MESSAGE_BYTES
from services.broker_identities import API_OTA_ROLE, create_client
from tests.brokers import ManagedBroker
from tests.client import Api
from tests.contract import op
from tests.factories import CreatedDevice, create_device, register
from tests.integration.broker.conftest import (
    closed_by_broker,
    granted,
    ingest_login,
    mqtt,
    next_message,
    nothing_more,
)
from tests.net import ROOT, free_port

TRANSPORTS = ("tcp", "tls", "ws", "wss")


@dataclass(frozen=True, slots=True)
class Bridge:
    """A running `python -m devstack.ws_bridge` in front of the session broker."""

    port: int
    tls_port: int
    log: Path
    pid: int


@dataclass(frozen=True, slots=True)
class Transport:
    """How a client reaches the broker: its port, WebSockets or not, TLS or not."""

    name: str
    port: int
    websockets: bool
    ca: Path | None

    def tls_context(self) -> ssl.SSLContext | None:
        # Python's default client context: the CA only, host name checked, X.509 strict.
        return None if self.ca is None else ssl.create_default_context(cafile=self.ca)


@pytest.fixture(scope="module")
def bridge(managed_broker: ManagedBroker) -> Iterator[Bridge]:
    """The bridge as `make run` starts it, logging at DEBUG (to show payloads stay out)."""
    port, tls_port = free_port(), free_port()
    certs = managed_broker.certificates
    with tempfile.TemporaryDirectory() as directory:
        log = Path(directory) / "bridge.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "devstack.ws_bridge",
                    "--broker-port",
                    str(managed_broker.port),
                    "--port",
                    str(port),
                    "--tls-port",
                    str(tls_port),
                    "--certfile",
                    str(certs.server_cert),
                    "--keyfile",
                    str(certs.server_key),
                    "--log-level",
                    "DEBUG",
                ],
                cwd=ROOT,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for_port("127.0.0.1", port)
            wait_for_port("127.0.0.1", tls_port)
            yield Bridge(port, tls_port, log, process.pid)
        finally:
            process.terminate()
            process.wait(timeout=10)


@pytest.fixture(params=TRANSPORTS)
def transport(
    request: pytest.FixtureRequest, managed_broker: ManagedBroker, bridge: Bridge
) -> Transport:
    ca = managed_broker.certificates.ca_cert
    return {
        "tcp": Transport("tcp", managed_broker.port, False, None),
        "tls": Transport("tls", managed_broker.tls_port, False, ca),
        "ws": Transport("ws", bridge.port, True, None),
        "wss": Transport("wss", bridge.tls_port, True, ca),
    }[request.param]


@asynccontextmanager
async def over(
    transport: Transport,
    username: str | None,
    password: str | None,
    client_id: str | None = None,
    *,
    version: aiomqtt.ProtocolVersion = aiomqtt.ProtocolVersion.V311,
) -> AsyncIterator[aiomqtt.Client]:
    """A connected client over `transport` (paho's own TLS and WebSocket code)."""
    async with aiomqtt.Client(
        "127.0.0.1",
        transport.port,
        username=username,
        password=password,
        identifier=client_id or username,
        protocol=version,
        transport="websockets" if transport.websockets else "tcp",
        websocket_path="/mqtt" if transport.websockets else None,
        tls_context=transport.tls_context(),
        timeout=5,
    ) as client:
        yield client


async def refused(transport: Transport, username: str, password: str, client_id: str) -> bool:
    """True when the broker refuses this login in its CONNACK."""
    try:
        async with over(transport, username, password, client_id):
            return False
    except aiomqtt.MqttCodeError as err:
        assert any(word in str(err).lower() for word in ("authori", "password", "identifier"))
        return True


async def ota_identity(settings: Settings, broker: ManagedBroker) -> tuple[str, str]:
    """An identity of the API's OTA role (the API's own is bound to its connection)."""
    name, password = f"iot-api-transport-{secrets.token_hex(4)}-ota", secrets.token_urlsafe(16)
    async with connect_dynsec(
        broker.host,
        broker.port,
        username=broker.admin_username,
        password=broker.admin_password,
    ) as dynsec:
        await dynsec.execute(create_client(settings, name, password, API_OTA_ROLE))
    return name, password


async def two_devices(api: Api) -> tuple[CreatedDevice, CreatedDevice]:
    session = await register(api)
    return await create_device(api, session, name="a"), await create_device(api, session, name="b")


# --- the broker's rules on every transport -------------------------------------------


@pytest.mark.parametrize("version", [aiomqtt.ProtocolVersion.V311, aiomqtt.ProtocolVersion.V5])
async def test_publish_over_transport_own_topic_only_reaches_ingest(
    api: Api,
    settings: Settings,
    managed_broker: ManagedBroker,
    transport: Transport,
    version: aiomqtt.ProtocolVersion,
) -> None:
    a, b = await two_devices(api)
    # Near the contract's 64 KiB: more than one WebSocket message and TCP read.
    reading = b'{"temperature": 21.5, "pad": "' + b"x" * 60_000 + b'"}'
    async with (
        mqtt(managed_broker, *ingest_login(settings)) as ingest,
        over(transport, a.mqtt_username, a.mqtt_password, version=version) as device_a,
    ):
        assert granted(await ingest.subscribe("devices/+/telemetry", qos=1)) == [True]
        for suffix in ("telemetry", "status", "ota/progress"):
            await device_a.publish(f"devices/{b.id}/{suffix}", b'{"forged": 1}', qos=1)
        await device_a.publish(f"devices/{a.id}/telemetry", reading, qos=1)
        first = await next_message(ingest)
        assert (first.topic.value, first.payload) == (f"devices/{a.id}/telemetry", reading)
        assert await nothing_more(ingest)


async def test_receive_over_transport_own_offers_only(
    api: Api, settings: Settings, managed_broker: ManagedBroker, transport: Transport
) -> None:
    a, b = await two_devices(api)
    platform_login = await ota_identity(settings, managed_broker)
    offer = b'{"updateId": "u", "pad": "' + b"y" * 200_000 + b'"}'
    async with (
        over(transport, a.mqtt_username, a.mqtt_password) as device_a,
        mqtt(managed_broker, *platform_login) as platform,
    ):
        foreign = [(f"devices/{b.id}/ota", 1), (f"devices/{b.id}/commands/#", 1), ("#", 1)]
        assert granted(await device_a.subscribe(foreign)) == [False] * 3
        assert granted(await device_a.subscribe(f"devices/{a.id}/ota", qos=1)) == [True]
        await platform.publish(f"devices/{b.id}/ota", b"for-b", qos=1)
        await platform.publish(f"devices/{a.id}/ota", offer, qos=1)
        message = await next_message(device_a)
        assert (message.topic.value, message.payload) == (f"devices/{a.id}/ota", offer)
        assert await nothing_more(device_a)


async def test_connect_over_transport_wrong_client_id_refused(
    api: Api, transport: Transport
) -> None:
    a, b = await two_devices(api)
    assert await refused(transport, a.mqtt_username, a.mqtt_password, b.id)
    assert await refused(transport, a.mqtt_username, a.mqtt_password, f"{a.id}-2")
    assert not await refused(transport, a.mqtt_username, a.mqtt_password, a.id)


async def test_connect_over_transport_bad_password_refused(api: Api, transport: Transport) -> None:
    a, b = await two_devices(api)
    assert await refused(transport, a.mqtt_username, a.mqtt_password + "x", a.id)
    assert await refused(transport, a.mqtt_username, b.mqtt_password, a.id)
    assert await refused(transport, b.mqtt_username, a.mqtt_password, b.id)


async def test_rotate_credentials_closes_session_over_transport(
    api: Api, transport: Transport
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    async with over(transport, device.mqtt_username, device.mqtt_password) as client:
        await client.subscribe(f"devices/{device.id}/ota")
        await api.execute(
            op("RotateDeviceCredentials"), {"id": device.id}, token=session.access_token
        )
        assert await closed_by_broker(client)


# --- TLS: only the CA's certificate, for the names it carries -------------------------


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1"])
async def test_connect_tls_only_own_ca_trusted(
    managed_broker: ManagedBroker, tmp_path: Path, name: str
) -> None:
    other = ensure_certificates(tmp_path / "other")
    for ca, trusted in ((managed_broker.certificates.ca_cert, True), (other.ca_cert, False)):
        context = ssl.create_default_context(cafile=ca)
        try:
            _, writer = await asyncio.open_connection(
                "127.0.0.1", managed_broker.tls_port, ssl=context, server_hostname=name
            )
        except ssl.SSLCertVerificationError:
            assert not trusted
        else:
            assert trusted
            writer.close()
            await writer.wait_closed()


async def test_mosquitto_clients_over_tls_as_documented(
    api: Api, settings: Settings, managed_broker: ManagedBroker
) -> None:
    """docs/devices.md's examples: mosquitto_sub and mosquitto_pub with --cafile."""
    device = (await two_devices(api))[0]
    platform_login = await ota_identity(settings, managed_broker)
    ca, port = str(managed_broker.certificates.ca_cert), str(managed_broker.tls_port)
    login = ["-i", device.id, "-u", device.mqtt_username, "-P", device.mqtt_password]
    common = ["--cafile", ca, "-h", "localhost", "-p", port]
    async with mqtt(managed_broker, *ingest_login(settings)) as ingest:
        await ingest.subscribe("devices/+/telemetry", qos=1)
        pub = await asyncio.create_subprocess_exec(
            "mosquitto_pub", *common, *login, "-q", "1",
            "-t", f"devices/{device.id}/telemetry", "-m", '{"temperature": 21.5}',
        )  # fmt: skip
        assert await asyncio.wait_for(pub.wait(), 10) == 0
        message = await next_message(ingest)
        assert message.payload == b'{"temperature": 21.5}'
    sub = await asyncio.create_subprocess_exec(
        "mosquitto_sub", *common, *login, "-q", "1",
        "-t", f"devices/{device.id}/ota", "-C", "1", "-W", "10",
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert sub.stdout is not None
    async with mqtt(managed_broker, *platform_login) as platform:
        # Retained: whenever mosquitto_sub's subscription lands, the offer reaches it.
        await platform.publish(f"devices/{device.id}/ota", b"offer", qos=1, retain=True)
        output = await asyncio.wait_for(sub.stdout.read(), 15)
        await platform.publish(f"devices/{device.id}/ota", b"", qos=1, retain=True)
    assert (await sub.wait(), output) == (0, b"offer\n")
    # Without the CA (the system's trust store only) the broker's certificate is refused.
    untrusted = await asyncio.create_subprocess_exec(
        "mosquitto_pub", "-h", "localhost", "-p", port, *login, "--capath", "/etc/ssl/certs",
        "-t", f"devices/{device.id}/telemetry", "-m", "{}",
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert await asyncio.wait_for(untrusted.wait(), 10) != 0


# --- the WebSocket bridge itself ---------------------------------------------------------


def remaining_length(size: int) -> bytes:
    encoded = bytearray()
    while True:
        size, digit = divmod(size, 128)
        encoded.append(digit | (0x80 if size else 0))
        if not size:
            return bytes(encoded)


def packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + remaining_length(len(body)) + body


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def connect_packet(device: CreatedDevice, password: str, will: tuple[str, bytes]) -> bytes:
    """An MQTT 3.1.1 CONNECT with username, password and a QoS 1 Last Will."""

    def field(value: bytes) -> bytes:
        return len(value).to_bytes(2, "big") + value

    flags = 0x80 | 0x40 | 0x08 | 0x04 | 0x02  # username, password, will QoS 1, will, clean
    header = field(b"MQTT") + bytes([4, flags]) + (30).to_bytes(2, "big")
    payload = field(device.id.encode()) + field(will[0].encode()) + field(will[1])
    body = header + payload + field(device.mqtt_username.encode()) + field(password.encode())
    return packet(0x10, body)


@asynccontextmanager
async def raw(bridge: Bridge, **options: object) -> AsyncIterator[ClientConnection]:
    async with connect(
        f"ws://127.0.0.1:{bridge.port}/mqtt",
        subprotocols=options.pop("subprotocols", ["mqtt"]),  # type: ignore[arg-type]
        **options,  # type: ignore[arg-type]
    ) as websocket:
        yield websocket


async def test_bridge_other_path_refused(bridge: Bridge) -> None:
    for path in ("/", "/graphql", "/mqtt/x"):
        with pytest.raises(InvalidStatus) as refusal:
            async with connect(f"ws://127.0.0.1:{bridge.port}{path}", subprotocols=["mqtt"]):  # type: ignore[list-item]
                pass
        assert refusal.value.response.status_code == 404


@pytest.mark.parametrize("subprotocols", [None, ["mqttv3.1"], ["graphql-ws"]])
async def test_bridge_without_mqtt_subprotocol_refused(
    bridge: Bridge, subprotocols: list[str] | None
) -> None:
    with pytest.raises(InvalidStatus) as refusal:
        async with raw(bridge, subprotocols=subprotocols):
            pass
    assert refusal.value.response.status_code == 400


async def test_bridge_text_message_closed_1003(bridge: Bridge) -> None:
    async with raw(bridge) as websocket:
        assert websocket.subprotocol == "mqtt"
        await websocket.send("\x10\x00")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(websocket.recv(), 5)
        assert websocket.close_code == 1003


async def test_bridge_oversized_message_closed_1009(bridge: Bridge) -> None:
    async with raw(bridge, max_size=None) as websocket:
        await websocket.send(b"\x00" * (MAX_MESSAGE_BYTES + 1))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(websocket.recv(), 5)
        assert websocket.close_code == 1009


async def test_bridge_client_gone_broker_sends_last_will(
    api: Api, settings: Settings, managed_broker: ManagedBroker, bridge: Bridge
) -> None:
    """The client closes its WebSocket without an MQTT DISCONNECT: the bridge closes the
    broker connection, so the broker publishes the device's Last Will."""
    device = (await two_devices(api))[0]
    will = (f"devices/{device.id}/status", b"offline")
    async with mqtt(managed_broker, *ingest_login(settings)) as ingest:
        await ingest.subscribe("devices/+/status", qos=1)
        async with raw(bridge) as websocket:
            await websocket.send(connect_packet(device, device.mqtt_password, will))
            assert await asyncio.wait_for(websocket.recv(), 5) == b"\x20\x02\x00\x00"
            assert await nothing_more(ingest, 0.3)
        message = await next_message(ingest)
        assert (message.topic.value, message.payload) == will


async def test_bridge_broker_closes_websocket_closed(api: Api, bridge: Bridge) -> None:
    """A refused login: the broker answers and hangs up, and so does the bridge."""
    device = (await two_devices(api))[0]
    will = (f"devices/{device.id}/status", b"offline")
    async with raw(bridge) as websocket:
        await websocket.send(connect_packet(device, device.mqtt_password + "x", will))
        connack = await asyncio.wait_for(websocket.recv(), 5)
        assert connack[:3] == b"\x20\x02\x00" and connack[3] in (4, 5), connack
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(websocket.recv(), 5)


async def test_bridge_never_logs_payloads(api: Api, bridge: Bridge) -> None:
    device = (await two_devices(api))[0]
    transport = Transport("ws", bridge.port, True, None)
    secret_reading = f'{{"marker_{secrets.token_hex(8)}": 1}}'
    async with over(transport, device.mqtt_username, device.mqtt_password) as client:
        await client.publish(f"devices/{device.id}/telemetry", secret_reading, qos=1)
    await asyncio.sleep(0.2)
    log = bridge.log.read_text()
    assert "connection open" in log  # it does log, at DEBUG even
    assert device.mqtt_password not in log
    assert secret_reading.split('"')[1] not in log


async def test_bridge_stalled_broker_bounded_nothing_lost(
    api: Api, settings: Settings, managed_broker: ManagedBroker, bridge: Bridge
) -> None:
    """The broker stops reading (SIGSTOP): the bridge stops reading the client instead of
    buffering, so the client's sends wait; once the broker runs again, all of it arrives."""
    device = (await two_devices(api))[0]
    topic = f"devices/{device.id}/telemetry".encode()
    messages, size = 512, 64 * 1024  # 32 MiB
    publish = packet(0x30, len(topic).to_bytes(2, "big") + topic + b"9" * size)
    assert managed_broker.process is not None
    async with (
        mqtt(managed_broker, *ingest_login(settings)) as ingest,
        raw(bridge) as websocket,
    ):
        await ingest.subscribe(topic.decode(), qos=0)
        will = (f"devices/{device.id}/status", b"offline")
        await websocket.send(connect_packet(device, device.mqtt_password, will))
        assert await asyncio.wait_for(websocket.recv(), 5) == b"\x20\x02\x00\x00"
        before = rss_bytes(bridge.pid)
        os.kill(managed_broker.process.pid, signal.SIGSTOP)
        try:

            async def send_all() -> None:
                for _ in range(messages):
                    await websocket.send(publish)

            sending = asyncio.create_task(send_all())
            await asyncio.sleep(1.5)
            assert not sending.done(), "32 MiB went somewhere while the broker was stopped"
            grown = rss_bytes(bridge.pid) - before
            assert grown < 8 * 1024 * 1024, f"the bridge buffered {grown} bytes"
        finally:
            os.kill(managed_broker.process.pid, signal.SIGCONT)
        await asyncio.wait_for(sending, 30)
        received = 0
        async with asyncio.timeout(30):
            async for message in ingest.messages:
                assert message.payload == b"9" * size
                received += 1
                if received == messages:
                    break


async def test_bridge_stalled_client_bounded_nothing_lost(
    api: Api, settings: Settings, managed_broker: ManagedBroker, bridge: Bridge
) -> None:
    """A client that stops reading: the bridge stops reading the broker instead of
    buffering (the broker holds the rest); once the client reads again, all of it arrives."""
    device = (await two_devices(api))[0]
    platform_login = await ota_identity(settings, managed_broker)
    topic = f"devices/{device.id}/ota".encode()
    messages, size = 512, 64 * 1024  # 32 MiB
    body = len(topic).to_bytes(2, "big") + topic + b"z" * size
    expected = messages * len(packet(0x30, body))
    # The client's own queue holds one message; its socket buffers are all that is left.
    async with raw(bridge, max_queue=1, max_size=None) as websocket:
        will = (f"devices/{device.id}/status", b"offline")
        await websocket.send(connect_packet(device, device.mqtt_password, will))
        assert await asyncio.wait_for(websocket.recv(), 5) == b"\x20\x02\x00\x00"
        subscribe = (1).to_bytes(2, "big") + len(topic).to_bytes(2, "big") + topic + b"\x00"
        await websocket.send(packet(0x82, subscribe))
        assert await asyncio.wait_for(websocket.recv(), 5) == b"\x90\x03\x00\x01\x00"
        before = rss_bytes(bridge.pid)
        async with mqtt(managed_broker, *platform_login) as platform:
            for _ in range(messages):
                await platform.publish(topic.decode(), b"z" * size, qos=0)
            await asyncio.sleep(1.0)  # everything the broker sends has gone as far as it can
            grown = rss_bytes(bridge.pid) - before
            assert grown < 8 * 1024 * 1024, f"the bridge buffered {grown} bytes"
            received = 0
            async with asyncio.timeout(30):
                while received < expected:
                    received += len(await websocket.recv())
    assert received == expected
