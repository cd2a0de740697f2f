"""The device simulator (`python -m simulator`) as a child process of a test."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable

from tests.net import ROOT


class SimulatorProcess:
    """Runs the simulator; its output lines are collected as they come."""

    def __init__(self, *arguments: str) -> None:
        self.arguments = arguments
        self.lines: list[str] = []
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def __aenter__(self) -> SimulatorProcess:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "simulator",
            *self.arguments,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        async for raw in self._process.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip())
            self._changed.set()
        self._changed.set()

    async def wait_for(self, accept: Callable[[list[str]], bool], timeout: float = 60) -> None:
        """Until the lines so far satisfy `accept`; fails with the output at the deadline."""
        try:
            async with asyncio.timeout(timeout):
                while not accept(self.lines):
                    if self._process is not None and self._process.returncode is not None:
                        raise AssertionError("simulator exited:\n" + "\n".join(self.lines))
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError("simulator output so far:\n" + "\n".join(self.lines)) from None

    async def __aexit__(self, *_exc: object) -> None:
        process = self._process
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout=20)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
