"""Lean Redis clients for the worker's hot paths: RESP bytes straight on a socket.

redis-py spends a few hundred microseconds of CPU on every pipeline round trip;
at one telemetry message at a time that was most of the worker's cost.
`PublishPipe` only publishes: commands are encoded here and written without
waiting, with replies switched off (CLIENT REPLY OFF). `RespClient` pipelines the
few commands whose replies matter (the deduplication marks). Both serve plain TCP
URLs; TLS and Unix sockets stay with redis-py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Self
from urllib.parse import unquote, urlparse

from redis.asyncio import Redis
from redis.asyncio.connection import Connection

logger = logging.getLogger(__name__)


class RespError(ConnectionError):
    """The connection to Redis failed, was refused, or timed out."""


class PublishPipeError(RespError):
    """The publishing connection failed or was refused."""


class RespReplyError(RespError):
    """Redis answered a command with an error."""


def encode_command(*parts: bytes) -> bytes:
    """One command in RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


# encode_command(b"PUBLISH", channel, payload) in one formatting step.
_PUBLISH = b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n"


def plain_tcp(url: str) -> bool:
    """Whether the lean clients here can serve `url` (plain TCP; not TLS, not a socket)."""
    return urlparse(url).scheme == "redis"


@dataclass(frozen=True, slots=True)
class RedisAddress:
    host: str
    port: int
    username: str | None
    password: str | None
    db: int

    @classmethod
    def parse(cls, url: str) -> Self:
        parsed = urlparse(url)
        if parsed.scheme not in {"redis", ""}:
            raise ValueError(f"unsupported Redis URL scheme for this client: {parsed.scheme}")
        path = parsed.path.strip("/")
        return cls(
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 6379,
            username=unquote(parsed.username) if parsed.username else None,
            password=unquote(parsed.password) if parsed.password else None,
            db=int(path) if path else 0,
        )

    @classmethod
    def of(cls, redis: Redis) -> Self | None:
        """Where redis-py's client connects, when that is plain TCP (else None)."""
        pool = redis.connection_pool
        if pool.connection_class is not Connection:  # TLS, a Unix socket...
            return None
        kwargs = pool.connection_kwargs
        return cls(
            host=kwargs.get("host", "127.0.0.1"),
            port=int(kwargs.get("port", 6379)),
            username=kwargs.get("username"),
            password=kwargs.get("password"),
            db=int(kwargs.get("db", 0)),
        )

    async def connect(
        self, within: float, *, select: bool
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection, authenticated and (with `select`) on the URL's database."""
        try:
            async with asyncio.timeout(within):
                reader, writer = await asyncio.open_connection(self.host, self.port)
                setup = []
                if self.password is not None:
                    auth = [b"AUTH", self.password.encode()]
                    if self.username:
                        auth.insert(1, self.username.encode())
                    setup.append(encode_command(*auth))
                if select and self.db:
                    setup.append(encode_command(b"SELECT", b"%d" % self.db))
                writer.write(b"".join(setup))
                replies = [await reader.readline() for _ in setup]
        except (OSError, TimeoutError) as err:
            raise RespError(f"cannot reach Redis at {self.host}:{self.port}") from err
        if not all(reply.startswith(b"+OK") for reply in replies):
            writer.close()
            raise RespError("Redis refused the credentials or the database")
        return reader, writer


class PublishPipe:
    """One connection that only publishes; write() never waits for Redis to answer."""

    def __init__(self, url: str, *, connect_timeout: float = 2.0) -> None:
        self._address = RedisAddress.parse(url)
        self._connect_timeout = connect_timeout
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._failed: BaseException | None = None

    async def __aenter__(self) -> Self:
        try:
            reader, writer = await self._address.connect(self._connect_timeout, select=False)
        except RespError as err:
            raise PublishPipeError(str(err)) from err
        # Fire and forget: without replies, Redis's answer to each write no longer wakes
        # this process (a wakeup cost ~200 µs of CPU on this project's VM). Errors go
        # unanswered too; a Redis without CLIENT REPLY answers with one error, logged
        # below, and then replies as before.
        writer.write(encode_command(b"CLIENT", b"REPLY", b"OFF"))
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
        # Notices the connection closing. Should Redis reply after all, PUBLISH answers
        # a count, ":N\r\n", never negative: a "-" can only start an error. Read in
        # chunks; a line at a time cost more than the publishing.
        try:
            while chunk := await reader.read(65536):
                if (start := chunk.find(b"-")) >= 0:
                    line = chunk[start : start + 200].split(b"\r\n", 1)[0]
                    logger.warning("Redis refused a PUBLISH: %s", line.decode(errors="replace"))
            self._failed = PublishPipeError("Redis closed the connection")
        except OSError as err:
            self._failed = PublishPipeError(str(err))

    def publish_many(self, messages: list[tuple[str, bytes]]) -> None:
        """Queue PUBLISHes on the socket; raises PublishPipeError once the link is gone."""
        if self._failed is not None or self._writer is None or self._writer.is_closing():
            raise self._failed or PublishPipeError("not connected")
        self._writer.write(
            b"".join(
                [
                    _PUBLISH % (len(raw), raw, len(payload), payload)
                    for channel, payload in messages
                    for raw in (channel.encode(),)
                ]
            )
        )

    async def drain(self) -> None:
        """Wait while the socket's send buffer is full (Redis slow): bounded memory."""
        if self._writer is not None:
            try:
                await self._writer.drain()
            except OSError as err:
                raise PublishPipeError(str(err)) from err


type Reply = int | str | bytes | list["Reply"] | RespReplyError | None


class RespClient:
    """One connection for pipelined commands whose replies matter (the dedup marks).

    redis-py's pipeline spent ~650 µs of CPU packing an HSET of 100 fields; this
    writes the commands as they are and parses the few replies. Connects on first
    use and again after a failure; RespError when Redis is away or slow.
    """

    def __init__(self, address: RedisAddress, *, timeout: float = 5.0) -> None:
        self._address = address
        self._timeout = timeout
        self._lock = asyncio.Lock()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def execute(self, *commands: tuple[bytes, ...]) -> list[Reply]:
        """Send the commands in one write; their replies, in order. RespReplyError
        when Redis refused one (the others were run)."""
        async with self._lock:
            try:
                async with asyncio.timeout(self._timeout):
                    if self._writer is None or self._writer.is_closing():
                        self._reader, self._writer = await self._address.connect(
                            self._timeout, select=True
                        )
                    assert self._reader is not None  # noqa: S101 - set together
                    self._writer.write(b"".join(encode_command(*c) for c in commands))
                    replies = [await _reply(self._reader) for _ in commands]
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as err:
                self.close()
                if isinstance(err, RespError):
                    raise
                raise RespError(f"Redis command failed: {str(err) or type(err).__name__}") from err
        for reply in replies:
            if isinstance(reply, RespReplyError):
                raise reply
        return replies

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


async def _reply(reader: asyncio.StreamReader) -> Reply:
    """One RESP2 reply; an error reply is returned as a RespReplyError, not raised."""
    line = await reader.readuntil(b"\r\n")
    kind, rest = line[:1], line[1:-2]
    if kind == b":":
        return int(rest)
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RespReplyError(rest.decode(errors="replace"))
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else (await reader.readexactly(size + 2))[:-2]
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [await _reply(reader) for _ in range(count)]
    raise ValueError(f"not a RESP reply: {line[:40]!r}")
