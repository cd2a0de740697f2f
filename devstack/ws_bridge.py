"""MQTT over WebSockets for a broker that has none: a WebSocket-to-TCP bridge.

Debian's Mosquitto 2.0.11 is built without websockets, so development (`make run`) and
the tests put this bridge in front of the broker's plain TCP listener, the way
production may put a proxy in front of it (docker-compose uses the eclipse-mosquitto
image's own websockets listeners instead). It knows nothing of MQTT: every binary
message a client sends is written to its own TCP connection to the broker, and what the
broker sends goes back as binary messages, so the broker still authenticates each client,
binds its client id and applies its ACLs.

- Only path `/mqtt` (404 otherwise) and subprotocol `mqtt` (400 without it), plain and
  with TLS. A text message closes the connection (1003): MQTT over WebSockets is binary.
- Bounded both ways: the WebSocket side queues at most `MAX_QUEUE` messages of at most
  `MAX_MESSAGE_BYTES` (the broker's `max_packet_size`; larger: 1009) and stops reading
  while the broker does not take them; the broker side is read in chunks of
  `CHUNK_BYTES`, and the next one only once the client's socket has taken the last.
- Either side closing closes the other.
- Payloads are never logged (a CONNECT carries the password): the websockets library's
  frame-level debug logging is off whatever the log level.

Run it: `python -m devstack.ws_bridge --broker-port 1884 --port 8083 --tls-port 8084
--certfile .data/certs/server.crt --keyfile .data/certs/server.key`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

PATH = "/mqtt"
SUBPROTOCOL = Subprotocol("mqtt")
# The broker refuses larger packets (max_packet_size), so a larger message is no MQTT.
MAX_MESSAGE_BYTES = 1024 * 1024
# Messages read from a client and not yet written to the broker.
MAX_QUEUE = 4
CHUNK_BYTES = 64 * 1024
CONNECT_TIMEOUT_SECONDS = 5.0

logger = logging.getLogger(__name__)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class WithoutFrames(logging.LoggerAdapter[logging.Logger]):
    """The websockets library's logger minus DEBUG, where it logs every frame, payload
    included; its other records (listening, connections opened and refused) pass."""

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)


library_logger = WithoutFrames(logging.getLogger(f"{__name__}.websockets"))


@dataclass(frozen=True, slots=True)
class BridgeOptions:
    """Where the bridge listens and which broker it relays to."""

    broker_host: str
    broker_port: int
    host: str = "127.0.0.1"
    port: int | None = None
    tls_port: int | None = None
    certfile: Path | None = None
    keyfile: Path | None = None


def server_tls_context(certfile: Path, keyfile: Path) -> ssl.SSLContext:
    """TLS 1.2 or newer with this certificate and key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    return context


def only_mqtt_path(connection: ServerConnection, request: Request) -> Response | None:
    """Refuse every path but /mqtt before the handshake (the query string is ignored)."""
    if urlsplit(request.path).path != PATH:
        return connection.respond(HTTPStatus.NOT_FOUND, "MQTT over WebSockets is at /mqtt\n")
    return None


async def relay(client: ServerConnection, host: str, port: int) -> None:
    """Carry one client's bytes to its own broker connection and back, until either closes."""
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
            reader, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError) as err:
        logger.warning("broker %s:%s unreachable: %s", host, port, err)
        await client.close(CloseCode.TRY_AGAIN_LATER, "broker unavailable")
        return

    async def upstream() -> None:
        async for message in client:
            if isinstance(message, str):
                await client.close(CloseCode.UNSUPPORTED_DATA, "MQTT over WebSockets is binary")
                return
            writer.write(message)
            await writer.drain()

    async def downstream() -> None:
        while chunk := await reader.read(CHUNK_BYTES):
            await client.send(chunk)

    tasks = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, OSError):
                await task
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        await client.close()
    logger.debug("relay for %s closed (%s)", client.remote_address, client.close_code)


@contextlib.asynccontextmanager
async def serving(options: BridgeOptions) -> AsyncIterator[list[Server]]:
    """The bridge's listeners (plain, TLS or both) while the context is open."""
    listeners: list[tuple[int, ssl.SSLContext | None]] = []
    if options.port is not None:
        listeners.append((options.port, None))
    if options.tls_port is not None:
        if options.certfile is None or options.keyfile is None:
            raise ValueError("a TLS listener needs a certificate and its key")
        listeners.append((options.tls_port, server_tls_context(options.certfile, options.keyfile)))
    if not listeners:
        raise ValueError("give a port, a TLS port or both")

    async def handler(client: ServerConnection) -> None:
        await relay(client, options.broker_host, options.broker_port)

    async with contextlib.AsyncExitStack() as stack:
        servers = [
            await stack.enter_async_context(
                serve(
                    handler,
                    options.host,
                    port,
                    ssl=context,
                    process_request=only_mqtt_path,
                    subprotocols=[SUBPROTOCOL],
                    # Deflating MQTT costs each connection a zlib context for little gain.
                    compression=None,
                    # No WebSocket pings, as Mosquitto's own listener sends none: the broker's
                    # MQTT keepalive finds a dead client and closes, and so does the bridge.
                    ping_interval=None,
                    max_size=MAX_MESSAGE_BYTES,
                    max_queue=MAX_QUEUE,
                    logger=library_logger,
                )
            )
            for port, context in listeners
        ]
        yield servers


def urls(options: BridgeOptions, host: str | None = None) -> list[str]:
    """ws:// and wss:// URLs of the listeners (`host` instead of the listening address)."""
    name = host or options.host
    name = f"[{name}]" if ":" in name else name
    found = [] if options.port is None else [f"ws://{name}:{options.port}{PATH}"]
    return found + ([] if options.tls_port is None else [f"wss://{name}:{options.tls_port}{PATH}"])


async def run(options: BridgeOptions) -> None:
    """Serve until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with serving(options):
        logger.info(
            "relaying %s to %s:%s",
            ", ".join(urls(options)),
            options.broker_host,
            options.broker_port,
        )
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve; the exit code."""
    parser = argparse.ArgumentParser(prog="python -m devstack.ws_bridge", description=__doc__)
    parser.add_argument("--broker-host", default="127.0.0.1")
    parser.add_argument("--broker-port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, help="plain WebSocket port (ws://)")
    parser.add_argument("--tls-port", type=int, help="WebSocket over TLS port (wss://)")
    parser.add_argument("--certfile", type=Path, help="server certificate (PEM) for --tls-port")
    parser.add_argument("--keyfile", type=Path, help="its private key (PEM)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    args = parser.parse_args(argv)
    if args.port is None and args.tls_port is None:
        parser.error("give --port, --tls-port or both")
    if args.tls_port is not None and (args.certfile is None or args.keyfile is None):
        parser.error("--tls-port needs --certfile and --keyfile")
    logging.basicConfig(level=args.log_level, format=LOG_FORMAT)
    options = BridgeOptions(
        broker_host=args.broker_host,
        broker_port=args.broker_port,
        host=args.host,
        port=args.port,
        tls_port=args.tls_port,
        certfile=args.certfile,
        keyfile=args.keyfile,
    )
    asyncio.run(run(options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
