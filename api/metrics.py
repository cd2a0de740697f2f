"""`GET /metrics`: the API's metrics in the Prometheus text format."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from graph.metrics import ApiMetrics


def metrics_endpoint(
    metrics: ApiMetrics, *more: CollectorRegistry
) -> Callable[[Request], Awaitable[Response]]:
    """The handler exposing `metrics`' registry and `more` (never the process-wide
    default one)."""

    async def serve_metrics(request: Request) -> Response:
        body = b"".join(generate_latest(r) for r in (metrics.registry, *more))
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return serve_metrics
