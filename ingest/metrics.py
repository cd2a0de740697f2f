"""The worker's metrics over HTTP (Prometheus text format), served from a thread."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, start_http_server

logger = logging.getLogger(__name__)


class MetricsServerError(OSError):
    """The metrics endpoint could not be opened (address in use, not permitted...)."""


@contextmanager
def serve_metrics(registry: CollectorRegistry, *, host: str, port: int) -> Iterator[str | None]:
    """Serve `registry` at http://host:port/metrics while the block runs; yields that URL,
    or None when `port` is 0 (not served). A thread, so a busy event loop still answers."""
    if port == 0:
        logger.info("ingest metrics not served (port 0)")
        yield None
        return
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as err:
        raise MetricsServerError(f"cannot serve metrics on {host}:{port}: {err}") from err
    url = f"http://{host}:{port}/metrics"
    logger.info("ingest metrics at %s", url)
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
