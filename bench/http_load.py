"""A lean HTTP load generator: keep-alive connections, one request in flight each.

Asyncio protocols rather than an HTTP client library, so the generator costs
little next to the API it measures (bench/queries.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import urlsplit


class KeepAlive(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[bytes] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = bytes(self.buffer[:end]).lower()
        marker = head.find(b"content-length:")
        length = int(head[marker + 15 :].split(b"\r\n", 1)[0])
        if len(self.buffer) >= end + 4 + length:
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            if not self.waiter.done():
                self.waiter.set_result(body)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the API closed the connection"))

    async def post(self, request: bytes) -> bytes:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


def request_bytes(url: str, token: str, query: str, variables: dict[str, Any]) -> bytes:
    body = json.dumps({"query": query, "variables": variables}).encode()
    host = urlsplit(url).netloc
    return (
        f"POST /graphql HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def drive(url: str, request: bytes, seconds: float, clients: int) -> dict[str, Any]:
    """`clients` connections sending `request` back to back for `seconds`."""
    loop = asyncio.get_running_loop()
    parts = urlsplit(url)
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        _, protocol = await loop.create_connection(
            KeepAlive, parts.hostname or "127.0.0.1", parts.port or 80
        )
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                body = await protocol.post(request)
                latencies.append(time.perf_counter() - started)
                if b'"errors"' in body:
                    errors.append(body[:300].decode(errors="replace"))
        finally:
            if protocol.transport is not None:
                protocol.transport.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pick(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 1)

    return {
        "requests": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": pick(0.50),
        "p99_ms": pick(0.99),
        "max_ms": round(latencies[-1] * 1000, 1),
    }
