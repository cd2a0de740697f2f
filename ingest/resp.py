"""A lean Redis PUBLISH pipe: RESP bytes written straight to one connection.

redis-py spends a few hundred microseconds of CPU on every pipeline round trip;
at one telemetry message at a time that was most of the worker's cost. PUBLISH
needs nothing back but a count, so commands are encoded here, written without
waiting, and the replies are read and discarded by a reader task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import Self
from urllib.parse import unquote, urlparse

logger = logging.getLogger(__name__)


class PublishPipeError(ConnectionError):
    """The connection to Redis failed or was refused."""


def encode_command(*parts: bytes) -> bytes:
    """One command in RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


class PublishPipe:
    """One connection that only publishes; write() never waits for Redis to answer."""

    def __init__(self, url: str, *, connect_timeout: float = 2.0) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in {"redis", ""}:
            raise ValueError(f"unsupported Redis URL scheme for publishing: {parsed.scheme}")
        self._host = parsed.hostname or "127.0.0.1"
        self._port = parsed.port or 6379
        self._username = unquote(parsed.username) if parsed.username else None
        self._password = unquote(parsed.password) if parsed.password else None
        self._connect_timeout = connect_timeout
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._failed: BaseException | None = None

    async def __aenter__(self) -> Self:
        try:
            async with asyncio.timeout(self._connect_timeout):
                reader, writer = await asyncio.open_connection(self._host, self._port)
        except (OSError, TimeoutError) as err:
            raise PublishPipeError(f"cannot reach Redis at {self._host}:{self._port}") from err
        if self._password is not None:
            auth = [b"AUTH", self._password.encode()]
            if self._username:
                auth.insert(1, self._username.encode())
            writer.write(encode_command(*auth))
            reply = await reader.readline()
            if not reply.startswith(b"+OK"):
                writer.close()
                raise PublishPipeError("Redis refused the credentials")
        self._writer = writer
        self._reader_task = asyncio.create_task(self._drain_replies(reader))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
            await asyncio.gather(self._reader_task, return_exceptions=True)
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()

    async def _drain_replies(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                if line.startswith(b"-"):
                    logger.warning(
                        "Redis refused a PUBLISH: %s", line[:200].decode(errors="replace")
                    )
            self._failed = PublishPipeError("Redis closed the connection")
        except OSError as err:
            self._failed = PublishPipeError(str(err))

    def publish_many(self, messages: list[tuple[str, bytes]]) -> None:
        """Queue PUBLISHes on the socket; raises PublishPipeError once the link is gone."""
        if self._failed is not None or self._writer is None or self._writer.is_closing():
            raise self._failed or PublishPipeError("not connected")
        self._writer.write(
            b"".join(
                encode_command(b"PUBLISH", channel.encode(), payload)
                for channel, payload in messages
            )
        )

    async def drain(self) -> None:
        """Wait while the socket's send buffer is full (Redis slow): bounded memory."""
        if self._writer is not None:
            try:
                await self._writer.drain()
            except OSError as err:
                raise PublishPipeError(str(err)) from err
