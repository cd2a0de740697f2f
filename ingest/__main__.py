"""`python -m ingest`: run one ingest worker until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from core.database import open_database
from core.logging import configure_logging
from core.redis import open_redis
from core.settings import WorkerSettings, get_worker_settings
from ingest.metrics import serve_metrics
from ingest.stats import IngestStats
from ingest.worker import IngestWorker

logger = logging.getLogger("ingest")


def metrics_server(
    settings: WorkerSettings, stats: IngestStats
) -> contextlib.AbstractContextManager[str | None]:
    """The worker's /metrics on `settings.ingest_metrics_host:ingest_metrics_port` (0: off)."""
    return serve_metrics(
        stats.registry, host=settings.ingest_metrics_host, port=settings.ingest_metrics_port
    )


async def serve() -> None:
    settings = get_worker_settings()
    stats = IngestStats()
    with metrics_server(settings, stats):
        async with open_database(settings), open_redis(settings) as redis:
            worker = IngestWorker(settings, redis, stats=stats)
            task = asyncio.create_task(worker.run())
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, task.cancel)
            logger.info("ingest worker %s starting", settings.ingest_client_id)
            with contextlib.suppress(asyncio.CancelledError):
                await task
            logger.info("ingest worker stopped")


def main() -> None:
    settings = get_worker_settings()
    configure_logging(settings, service="ingest", instance=settings.ingest_client_id)
    asyncio.run(serve())


if __name__ == "__main__":
    main()
