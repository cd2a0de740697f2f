"""A long-lived connection held open by a background task that reconnects with backoff.

Entering the context manager starts the task and gives the first connection a moment
(start-up never fails over it); leaving cancels the task. `ready` is set while the
connection is usable, so a subclass's commands can fail at once while it is down
instead of queueing behind an outage.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from types import TracebackType
from typing import ClassVar, Self

from core.backoff import MQTT_RECONNECT, Backoff, BackoffPolicy


class Reconnecting(ABC):
    """The lifecycle; a subclass says how to connect once and what a lost one raises."""

    task_name: ClassVar[str]
    # What `_connect_once` raises when the connection fails or ends: logged, then retried.
    lost_errors: ClassVar[tuple[type[Exception], ...]]
    policy: ClassVar[BackoffPolicy] = MQTT_RECONNECT

    def __init__(self, *, startup_wait_seconds: float) -> None:
        self._startup_wait = startup_wait_seconds
        self._backoff = Backoff(self.policy)
        self._task: asyncio.Task[None] | None = None
        # The connection is up and usable (the subclass's on-connect work done).
        self.ready = asyncio.Event()

    @abstractmethod
    async def _connect_once(self) -> None:
        """Connect, set `ready` once usable, return or raise when the connection ends.

        Call `self._backoff.reset()` once the attempt counts as a success."""

    @abstractmethod
    def _forget(self) -> None:
        """Drop what refers to the connection that just ended (after every attempt)."""

    @abstractmethod
    def _log_lost(self, err: Exception, delay: float) -> None:
        """Log a failed or lost connection; `delay` is the wait before the next attempt."""

    @abstractmethod
    def _log_not_ready(self) -> None:
        """Log that start-up goes on without the connection."""

    async def wait_ready(self, seconds: float) -> bool:
        """Wait up to `seconds` for the connection; whether it is up."""
        try:
            async with asyncio.timeout(seconds):
                await self.ready.wait()
        except TimeoutError:
            return False
        return True

    async def _run(self) -> None:
        while True:
            try:
                await self._connect_once()
            except self.lost_errors as err:
                self._log_lost(err, self._backoff.delay)
            finally:
                self.ready.clear()
                self._forget()
            await self._backoff.sleep()

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run(), name=self.task_name)
        if not await self.wait_ready(self._startup_wait):
            self._log_not_ready()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
