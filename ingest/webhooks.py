"""Webhook deliveries from the worker: a bounded outbox, retries with backoff, never waiting.

`submit` is synchronous and returns at once: each accepted delivery becomes a task
that tries up to `max_attempts` times (exponential backoff with jitter) while at most
`concurrency` requests are in flight. At most `outbox_size` deliveries wait or run;
beyond that a new one is dropped and counted. Nothing here can hold back ingest.

A hostile or slow receiver costs a bounded share, never more:
- each attempt (resolve, connect, send, read) ends by `timeout`, however the receiver
  trickles its answer; the status decides, and at most `response_max_bytes` of the body
  are read (the transport reads up to 64 KiB at a time, and caps headers at 100 KiB);
- one owner holds at most `concurrency_per_owner` of the request slots, handed out
  round-robin among owners waiting (ingest/fair_share.py), and at most
  `outbox_per_owner` of the outbox (beyond: dropped, counted as `owner_full`).

SSRF: unless private networks are allowed, the host is resolved before each attempt
and the delivery is refused (not retried) when any address is not a public unicast
one; redirects are never followed. The remaining window is DNS rebinding between this
check and the connection httpx makes (docs/alerts.md).

Never logged: the secret, the body, the URL's path or query (only its host).
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Self
from urllib.parse import urlsplit

import httpx

from ingest.fair_share import FairShare
from ingest.stats import IngestStats
from services.webhooks import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    refused_address,
    sign,
)

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 300.0
type Outcome = Literal["delivered", "failed", "blocked"]


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    delivery_id: str
    owner: str  # whose share of the outbox and of the request slots it uses
    url: str
    secret: str = field(repr=False)
    body: bytes = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookOptions:
    timeout: float = 5.0  # the whole attempt
    max_attempts: int = 6
    retry_base: float = 1.0
    outbox_size: int = 1000
    concurrency: int = 4
    allow_private: bool = False
    response_max_bytes: int = 4096
    concurrency_per_owner: int = 1
    outbox_per_owner: int = 100


class WebhookSender:
    """An async context manager holding the HTTP client; deliveries in flight are
    cancelled on exit."""

    def __init__(self, stats: IngestStats, options: WebhookOptions) -> None:
        self._stats = stats
        self._options = options
        self._pending: set[asyncio.Task[None]] = set()
        self._by_owner: dict[str, int] = {}  # deliveries waiting or running, per owner
        # Request slots: a ticket (a future) per attempt waiting for one.
        self._slots: FairShare[asyncio.Future[None]] = FairShare(
            options.concurrency, options.concurrency_per_owner
        )
        self._client: httpx.AsyncClient | None = None
        self._random = random.Random()  # noqa: S311 - jitter, not cryptography

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def __aenter__(self) -> Self:
        self._client = httpx.AsyncClient(
            timeout=self._options.timeout,
            follow_redirects=False,
            headers={"User-Agent": "iotplatform-webhooks/1"},
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tasks = list(self._pending)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def submit(self, delivery: WebhookDelivery) -> bool:
        """Start delivering in the background; False (dropped, counted) when the outbox, or
        the owner's share of it, is full or the sender is not open."""
        if self._client is None or len(self._pending) >= self._options.outbox_size:
            self._stats.webhook_outcome("dropped")
            logger.warning("webhook delivery %s dropped: outbox full", delivery.delivery_id)
            return False
        owner = delivery.owner
        queued = self._by_owner.get(owner, 0)
        if queued >= self._options.outbox_per_owner:
            self._stats.webhook_outcome("owner_full")
            logger.warning(
                "webhook delivery %s dropped: user %s has %d deliveries waiting",
                delivery.delivery_id,
                owner,
                queued,
            )
            return False
        self._by_owner[owner] = queued + 1
        task = asyncio.create_task(self._deliver(delivery), name="webhook")
        self._pending.add(task)
        task.add_done_callback(lambda done: self._finished(done, owner))
        return True

    def _finished(self, task: asyncio.Task[None], owner: str) -> None:
        self._pending.discard(task)
        left = self._by_owner[owner] - 1
        if left:
            self._by_owner[owner] = left
        else:
            del self._by_owner[owner]

    @asynccontextmanager
    async def _slot(self, owner: str) -> AsyncIterator[None]:
        """Hold one of the request slots, in turn with other owners."""
        ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self._slots.request(owner, ticket):
            try:
                await ticket
            except asyncio.CancelledError:
                # Granted meanwhile (the result set): ours to give back. A ticket
                # cancelled before its grant was given back by _release.
                if not self._slots.cancel(owner, ticket) and not ticket.cancelled():
                    self._release(owner)
                raise
        try:
            yield
        finally:
            self._release(owner)

    def _release(self, owner: str) -> None:
        for holder, ticket in self._slots.release(owner):
            if ticket.done():  # its waiter was cancelled: the slot goes on
                self._release(holder)
            else:
                ticket.set_result(None)

    def _backoff(self, attempt: int) -> float:
        delay = min(self._options.retry_base * 2.0 ** (attempt - 1), MAX_BACKOFF_SECONDS)
        return delay * self._random.uniform(0.8, 1.2)

    async def _deliver(self, delivery: WebhookDelivery) -> None:
        host = urlsplit(delivery.url).hostname or "?"
        attempts = self._options.max_attempts
        for attempt in range(1, attempts + 1):
            async with self._slot(delivery.owner):
                outcome = await self._attempt(delivery)
            self._stats.webhook_outcome(outcome)
            if outcome == "delivered":
                return
            if outcome == "blocked":
                logger.warning(
                    "webhook delivery %s refused: %s is not a public address (SSRF guard)",
                    delivery.delivery_id,
                    host,
                )
                return
            if attempt < attempts:
                await asyncio.sleep(self._backoff(attempt))
        self._stats.webhook_outcome("exhausted")
        logger.warning(
            "webhook delivery %s to %s given up after %d attempts",
            delivery.delivery_id,
            host,
            attempts,
        )

    async def _attempt(self, delivery: WebhookDelivery) -> Outcome:
        client = self._client
        if client is None:
            return "failed"
        options = self._options
        status: int | None = None
        try:
            # httpx's timeouts are per operation: a byte every few seconds never trips
            # them. This deadline covers the whole attempt.
            async with asyncio.timeout(options.timeout):
                if not options.allow_private:
                    public = await _public(delivery.url)
                    if public is None:
                        return "failed"  # resolution failed: worth another try
                    if not public:
                        return "blocked"
                timestamp = int(time.time())
                headers = {
                    "Content-Type": "application/json",
                    DELIVERY_HEADER: delivery.delivery_id,
                    TIMESTAMP_HEADER: str(timestamp),
                    SIGNATURE_HEADER: sign(delivery.secret, timestamp, delivery.body),
                }
                request = client.stream(
                    "POST", delivery.url, content=delivery.body, headers=headers
                )
                async with request as response:
                    status = response.status_code
                    await _drain(response, options.response_max_bytes)
        except (TimeoutError, httpx.HTTPError) as err:
            # Once the status is in, a body cut short changes nothing.
            if status is None:
                logger.info(
                    "webhook delivery %s failed: %s", delivery.delivery_id, type(err).__name__
                )
                return "failed"
        if 200 <= status < 300:
            return "delivered"
        logger.info("webhook delivery %s answered %d", delivery.delivery_id, status)
        return "failed"


async def _drain(response: httpx.Response, limit: int) -> None:
    """Read at most about `limit` bytes of the body, then stop (closing the connection)."""
    read = 0
    if limit <= 0:
        return
    async for chunk in response.aiter_raw():
        read += len(chunk)
        if read >= limit:
            return


async def _public(url: str) -> bool | None:
    """Whether every address the URL's host resolves to is public; None when it does not
    resolve now."""
    parts = urlsplit(url)
    host = parts.hostname
    if host is None:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return None
    addresses = {str(info[4][0]) for info in infos}
    return bool(addresses) and not any(refused_address(a) for a in addresses)
