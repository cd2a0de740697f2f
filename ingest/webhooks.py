"""Webhook deliveries from the worker: a bounded outbox, retries with backoff, never waiting.

`submit` is synchronous and returns at once: each accepted delivery becomes a task
that tries up to `max_attempts` times (exponential backoff with jitter) while at most
`concurrency` requests are in flight. At most `outbox_size` deliveries wait or run;
beyond that a new one is dropped and counted. Nothing here can hold back ingest.

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
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Self
from urllib.parse import urlsplit

import httpx

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
    url: str
    secret: str = field(repr=False)
    body: bytes = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookOptions:
    timeout: float = 5.0
    max_attempts: int = 6
    retry_base: float = 1.0
    outbox_size: int = 1000
    concurrency: int = 4
    allow_private: bool = False


class WebhookSender:
    """An async context manager holding the HTTP client; deliveries in flight are
    cancelled on exit."""

    def __init__(self, stats: IngestStats, options: WebhookOptions) -> None:
        self._stats = stats
        self._options = options
        self._pending: set[asyncio.Task[None]] = set()
        self._semaphore = asyncio.Semaphore(options.concurrency)
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
        """Start delivering in the background; False (dropped, counted) when the outbox is
        full or the sender is not open."""
        if self._client is None or len(self._pending) >= self._options.outbox_size:
            self._stats.webhook_outcome("dropped")
            logger.warning("webhook delivery %s dropped: outbox full", delivery.delivery_id)
            return False
        task = asyncio.create_task(self._deliver(delivery), name="webhook")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return True

    def _backoff(self, attempt: int) -> float:
        delay = min(self._options.retry_base * 2.0 ** (attempt - 1), MAX_BACKOFF_SECONDS)
        return delay * self._random.uniform(0.8, 1.2)

    async def _deliver(self, delivery: WebhookDelivery) -> None:
        host = urlsplit(delivery.url).hostname or "?"
        attempts = self._options.max_attempts
        for attempt in range(1, attempts + 1):
            async with self._semaphore:
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
        if not self._options.allow_private:
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
        try:
            response = await client.post(delivery.url, content=delivery.body, headers=headers)
        except httpx.HTTPError as err:
            logger.info("webhook delivery %s failed: %s", delivery.delivery_id, type(err).__name__)
            return "failed"
        if 200 <= response.status_code < 300:
            return "delivered"
        logger.info("webhook delivery %s answered %d", delivery.delivery_id, response.status_code)
        return "failed"


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
