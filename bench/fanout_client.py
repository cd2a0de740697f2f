"""Subscriber process of bench/fanout.py: many graphql-transport-ws subscriptions, cheaply.

Each subscription is its own WebSocket connection, spoken by a minimal client on
an asyncio Protocol (no per-message coroutine, no compression offered): it does
the handshake, `connection_init`, one `subscribe`, answers pings, and for every
`next` message takes the reading's timestamp (the publish time, set by the
injector) and records now - timestamp. So the client costs a few microseconds
per delivery and does not hide the API's cost on a 2-core machine.

Commands, one JSON line each on stdin; one JSON line answers each on stdout:
  {"subscriptions": [[url, token, device_id | null], ...]}  -> {"connecting": n} once
                        every connection is acknowledged (or refused)
  {"cmd": "subscribe"}  -> each connection sends its subscribe; {"subscribed": n}
  {"cmd": "stats"}      -> cumulative {"received", "connected", "acked", "closed", "errors"}
  {"cmd": "latencies"}  -> {"received", "first", "last", "latencies_us": [...]} since last call
  {"cmd": "quit"}       -> closes every connection and exits
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
from array import array
from datetime import datetime
from typing import Any, cast
from urllib.parse import urlsplit

QUERY = "subscription S($d: ID) { readingAdded(deviceId: $d) { timestamp } }"
TIMESTAMP = b'"timestamp":"'
CONNECT_CONCURRENCY = 50


class Tally:
    """What this process has seen, shared by its connections."""

    def __init__(self) -> None:
        self.received = 0
        self.connected = 0
        self.acked = 0
        self.closed = 0
        self.errors: list[str] = []
        self.latencies = array("q")  # microseconds
        self.window_received = 0
        self.first = 0.0
        self.last = 0.0

    def delivery(self, message: bytes) -> None:
        now = time.time()
        start = message.find(TIMESTAMP)
        if start < 0:
            self.errors.append(message[:200].decode(errors="replace"))
            return
        start += len(TIMESTAMP)
        sent = datetime.fromisoformat(message[start : message.index(b'"', start)].decode())
        self.latencies.append(int((now - sent.timestamp()) * 1e6))
        self.received += 1
        self.window_received += 1
        if self.window_received == 1:
            self.first = now
        self.last = now


def frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One masked client frame (RFC 6455 section 5.2)."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = bytes([0x80 | opcode, 0x80 | length])
    elif length < 65536:
        header = bytes([0x80 | opcode, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([0x80 | opcode, 0x80 | 127]) + length.to_bytes(8, "big")
    repeated = (mask * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        length, "big"
    )
    return header + mask + masked


class Subscriber(asyncio.Protocol):
    """One WebSocket connection carrying one readingAdded subscription."""

    def __init__(self, host: str, path: str, token: str, device: str | None, tally: Tally) -> None:
        self.host = host
        self.path = path
        self.token = token
        self.device = device
        self.tally = tally
        self.buffer = bytearray()
        self.open = False
        self.transport: asyncio.Transport | None = None
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            (
                f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
            ).encode()
        )

    def send(self, message: dict[str, Any]) -> None:
        assert self.transport is not None
        self.transport.write(frame(json.dumps(message, separators=(",", ":")).encode()))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.open:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buffer[: self.buffer.find(b"\r\n")])
            if b" 101 " not in status:
                self.fail(f"handshake refused: {status!r}")
                return
            del self.buffer[: end + 4]
            self.open = True
            self.tally.connected += 1
            init = {"authorization": f"Bearer {self.token}"}
            self.send({"type": "connection_init", "payload": init})
        self.frames()

    def frames(self) -> None:
        buffer = self.buffer
        while len(buffer) >= 2:
            opcode, length, start = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length, start = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length, start = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < start + length:
                return
            payload = bytes(buffer[start : start + length])
            del buffer[: start + length]
            if opcode == 0x1:
                self.message(payload)
            elif opcode == 0x9:  # ping: uvicorn closes connections that do not answer
                assert self.transport is not None
                self.transport.write(frame(payload, 0xA))
            elif opcode == 0x8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self.fail(f"closed by the server: {code}")
                return

    def message(self, payload: bytes) -> None:
        if b'"type":"next"' in payload:
            self.tally.delivery(payload)
        elif b'"connection_ack"' in payload:
            self.tally.acked += 1
            if not self.done.done():
                self.done.set_result(None)
        elif b'"type":"ping"' in payload:
            self.send({"type": "pong"})
        elif b'"type":"pong"' not in payload:
            self.tally.errors.append(payload[:200].decode(errors="replace"))

    def subscribe(self) -> None:
        """Start the subscription (after the acknowledgement)."""
        variables = {"d": self.device}
        self.send(
            {"id": "1", "type": "subscribe", "payload": {"query": QUERY, "variables": variables}}
        )

    def fail(self, reason: str) -> None:
        self.tally.closed += 1
        self.tally.errors.append(reason)
        if not self.done.done():
            self.done.set_result(None)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame(b"\x03\xe8", 0x8))
            self.transport.close()


async def connect_all(plan: list[list[Any]], tally: Tally) -> list[Subscriber]:
    """Open every planned subscription, a bounded number of handshakes at a time."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    subscribers: list[Subscriber] = []

    async def one(url: str, token: str, device: str | None) -> None:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        async with gate:
            _, protocol = await loop.create_connection(
                lambda: Subscriber(f"{host}:{port}", "/graphql", token, device, tally), host, port
            )
            subscribers.append(protocol)
            async with asyncio.timeout(30):
                await protocol.done  # acknowledged or refused

    await asyncio.gather(*(one(*entry) for entry in plan))
    return subscribers


async def serve() -> None:
    tally = Tally()
    subscribers: list[Subscriber] = []
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)  # the subscription list is one line
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def answer(payload: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(payload) + "\n")
        sys.stdout.flush()

    while line := await reader.readline():
        command = json.loads(line)
        if "subscriptions" in command:
            subscribers = await connect_all(command["subscriptions"], tally)
            answer({"connecting": len(subscribers)})
        elif command["cmd"] == "subscribe":
            for subscriber in subscribers:
                if subscriber.open and subscriber.transport is not None:
                    subscriber.subscribe()
            answer({"subscribed": len(subscribers)})
        elif command["cmd"] == "stats":
            answer(
                {
                    "received": tally.received,
                    "connected": tally.connected,
                    "acked": tally.acked,
                    "closed": tally.closed,
                    "errors": tally.errors[:5],
                    "error_count": len(tally.errors),
                }
            )
        elif command["cmd"] == "latencies":
            answer(
                {
                    "received": tally.window_received,
                    "first": tally.first,
                    "last": tally.last,
                    "latencies_us": tally.latencies.tolist(),
                }
            )
            tally.latencies = array("q")
            tally.window_received = 0
        elif command["cmd"] == "quit":
            break
    for subscriber in subscribers:
        subscriber.close()
    await asyncio.sleep(0.2)


def main() -> None:
    try:
        import uvloop
    except ImportError:  # the standard loop works, only slower
        asyncio.run(serve())
    else:
        uvloop.run(serve())


if __name__ == "__main__":
    main()
