"""A hostile webhook receiver against the real worker: real HTTP servers on 127.0.0.1.

Each receiver is a raw asyncio server that records every connection (when it opened,
when the worker closed it, how many response bytes the kernel accepted from it) and
misbehaves in one way: an endless body, a status line trickled a byte at a time, or no
answer at all. What must hold: the worker reads a bounded amount, each attempt ends
by its deadline, and another owner's webhook goes out while those are retried.

Bytes "sent" are counted when the kernel accepted them; once the worker stops reading,
the socket buffers (loopback: some 100 KiB each way) still take some, hence the slack
in the bounds below. Without a bound the count grows by megabytes a second.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Literal

import aiomqtt
from redis.asyncio import Redis

from core.settings import Settings
from ingest.worker import IngestWorker
from tests.client import Api
from tests.factories import register
from tests.integration.alerts import conftest as alert_fixtures
from tests.integration.alerts.conftest import eventually, start_alert_worker
from tests.integration.alerts.test_webhooks import raise_one, set_webhook
from tests.integration.ingest.conftest import stop_worker

# The alert suite's fixtures (pytest finds fixtures among a module's attributes).
alert_identities = alert_fixtures.alert_identities
alert_settings = alert_fixtures.alert_settings
publisher = alert_fixtures.publisher

type Mode = Literal["ok", "endless", "trickle", "silent"]

CHUNK = 16 * 1024
# The worker's read limit is a few KiB; this leaves room for the kernel's buffers.
SENT_BOUND = 1024 * 1024
SLACK_SECONDS = 3.0  # a loaded 2-core machine: generous, still far below "never"


@dataclass
class Connection:
    opened: float
    closed: float | None = None
    sent: int = 0
    requested: bool = False


@dataclass
class HostileReceiver:
    mode: Mode
    url: str = ""
    connections: list[Connection] = field(default_factory=list)
    open_now: int = 0
    most_open: int = 0

    @property
    def requests(self) -> int:
        return sum(c.requested for c in self.connections)

    def finished(self) -> list[Connection]:
        return [c for c in self.connections if c.closed is not None]


async def _read_request(reader: asyncio.StreamReader) -> bool:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return False
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    try:
        await reader.readexactly(length)
    except (asyncio.IncompleteReadError, ConnectionError):
        return False
    return True


async def _answer(mode: Mode, conn: Connection, writer: asyncio.StreamWriter) -> None:
    if mode == "ok":
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        return
    if mode == "endless":
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"  # no length: until EOF
        writer.write(head)
        await writer.drain()
        chunk = b"x" * CHUNK
        while True:
            writer.write(chunk)
            await writer.drain()
            conn.sent += len(chunk)
            await asyncio.sleep(0.005)  # ~3 MB/s: unbounded, but not the machine's RAM at once
    if mode == "trickle":
        line = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000_000
        for index in range(len(line)):
            writer.write(line[index : index + 1])
            await writer.drain()
            conn.sent += 1
            await asyncio.sleep(0.2)
    await asyncio.Event().wait()  # silent: never answer


@asynccontextmanager
async def hostile_receiver(mode: Mode) -> AsyncIterator[HostileReceiver]:
    """A raw HTTP/1.1 server on 127.0.0.1 that answers in `mode`, for one test."""
    state = HostileReceiver(mode)
    tasks: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(opened=time.monotonic())
        state.connections.append(conn)
        state.open_now += 1
        state.most_open = max(state.most_open, state.open_now)
        try:
            conn.requested = await _read_request(reader)
            if conn.requested:
                answer = asyncio.create_task(_answer(mode, conn, writer))
                eof = asyncio.create_task(reader.read(1))  # b"": the worker closed
                try:
                    await asyncio.wait({answer, eof}, return_when=asyncio.FIRST_COMPLETED)
                    if mode == "ok" and answer.done():
                        await eof  # the worker keeps the connection until it is done
                finally:
                    answer.cancel()
                    eof.cancel()
                    await asyncio.gather(answer, eof, return_exceptions=True)
        except ConnectionError:
            pass
        finally:
            conn.closed = time.monotonic()
            state.open_now -= 1
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()

    def start(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(handle(reader, writer))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(start, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    # "localhost" passes the API's URL check; the test worker allows private targets.
    state.url = f"http://localhost:{port}/hooks/{mode}"
    try:
        yield state
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


def _outcome(worker: IngestWorker, outcome: str) -> float:
    return worker.stats.sample("ingest_webhook_deliveries_total", {"outcome": outcome})


async def _true(value: bool) -> bool:
    return value


async def test_read_webhook_endless_body_bounded(
    api: Api, alert_settings: Settings, publisher: aiomqtt.Client, redis: Redis
) -> None:
    running, task = await start_alert_worker(alert_settings, redis, webhook_timeout_seconds=20)
    try:
        user = await register(api)
        async with hostile_receiver("endless") as hook:
            await set_webhook(api, user, hook.url)
            tracemalloc.start()
            try:
                await raise_one(api, user, running, publisher, 40.0)
                await eventually(
                    lambda: _true(len(hook.finished()) >= 1),
                    timeout=15,
                    what="the worker closing the endless response",
                )
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            [conn] = hook.connections
            assert conn.closed is not None
            print(f"endless body: {conn.sent} bytes sent, traced peak {peak / 1024:.0f} KiB")
            assert conn.sent <= SENT_BOUND
            # The worker's whole allocation peak while it raised, posted and read: bounded.
            assert peak < 8 * 1024 * 1024
            # A 2xx status is the receiver's word: delivered, not retried.
            assert _outcome(running, "delivered") == 1
    finally:
        await stop_worker(task)


async def test_end_webhook_attempt_at_deadline_trickling_receiver(
    api: Api, alert_settings: Settings, publisher: aiomqtt.Client, redis: Redis
) -> None:
    deadline = 1.5
    running, task = await start_alert_worker(
        alert_settings, redis, webhook_timeout_seconds=deadline, webhook_max_attempts=2
    )
    try:
        user = await register(api)
        async with hostile_receiver("trickle") as hook:
            await set_webhook(api, user, hook.url)
            await raise_one(api, user, running, publisher, 40.0)
            # A byte every 0.2 s never trips a per-read timeout: only a total deadline ends it.
            await eventually(
                lambda: _true(_outcome(running, "exhausted") == 1 and len(hook.finished()) == 2),
                timeout=20,
                what="both trickled attempts ended and the delivery given up",
            )
            attempts = hook.finished()
            assert len(attempts) == 2
            print("trickled attempts lasted", [f"{c.closed - c.opened:.2f} s" for c in attempts])
            for conn in attempts:
                assert conn.closed is not None
                assert conn.closed - conn.opened <= deadline + SLACK_SECONDS
            assert _outcome(running, "failed") == 2
    finally:
        await stop_worker(task)


async def test_deliver_other_owner_webhook_while_hostile_receivers_retry(
    api: Api, alert_settings: Settings, publisher: aiomqtt.Client, redis: Redis
) -> None:
    # Three hostile owners, three alerts each: a global outbox alone would take eight.
    running, task = await start_alert_worker(
        alert_settings,
        redis,
        webhook_timeout_seconds=3,
        webhook_max_attempts=20,
        webhook_concurrency=4,
        webhook_outbox_size=8,
        webhook_outbox_per_owner=2,
        webhook_concurrency_per_owner=1,
    )
    try:
        async with (
            hostile_receiver("endless") as endless,
            hostile_receiver("trickle") as trickle,
            hostile_receiver("silent") as silent,
            hostile_receiver("ok") as honest,
        ):
            hostile = (endless, trickle, silent)
            for hook in hostile:
                attacker = await register(api)
                await set_webhook(api, attacker, hook.url)
                for value in (40.0, 41.0, 42.0):
                    await raise_one(api, attacker, running, publisher, value)
            await eventually(
                lambda: _true(sum(hook.requests for hook in hostile) >= 3),
                what="hostile receivers holding attempts",
            )
            victim = await register(api)
            await set_webhook(api, victim, honest.url)
            started = time.monotonic()
            await raise_one(api, victim, running, publisher, 40.0)
            await eventually(
                lambda: _true(honest.requests == 1),
                timeout=15,
                what="the other owner's webhook",
            )
            latency = time.monotonic() - started
            print(f"other owner's webhook after {latency:.2f} s while hostile ones retried")
            # Still being retried: none of the hostile deliveries has been given up.
            assert _outcome(running, "exhausted") == 0
            # Each owner held at most its share of the slots and of the outbox.
            assert all(hook.most_open <= 1 for hook in hostile)
            # The endless receiver says 200 (delivered: its share frees up); the trickling
            # and the silent ones keep two each waiting, and lose their third.
            assert _outcome(running, "owner_full") == 2
            assert _outcome(running, "dropped") == 0
    finally:
        await stop_worker(task)
