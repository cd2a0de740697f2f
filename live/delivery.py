"""The API process's live delivery state, opened once in its lifespan and passed to every
subscription through the request context: the results its subscribers share, and the
slow subscribers' closes still in flight."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self

from live.sharing import SharedResults

logger = logging.getLogger(__name__)


class LiveDelivery:
    """An async context manager; on exit, closes still in flight are cancelled.

    `share=False` executes every subscriber's selection on its own (a benchmark's
    baseline: bench.baseline_api)."""

    def __init__(self, *, share: bool = True) -> None:
        self.shared = SharedResults() if share else None
        # The loop keeps only weak references to tasks.
        self._closing: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        closing, self._closing = list(self._closing), set()
        for task in closing:
            task.cancel()
        await asyncio.gather(*closing, return_exceptions=True)

    def close_later(self, close: Coroutine[Any, Any, None]) -> None:
        """Run a socket's close beside the caller, which cannot wait for it."""
        task = asyncio.create_task(close)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
