"""Each user's open WebSockets in this API process: quotas, and closing them all when
the user's role or password changes.

A WebSocket is authenticated once, at connection_init, and keeps the role it was
opened with: live events are authorised against it, per event, without a read (the
fan-out path, README Performance). So rather than read the user again per event, a
change of role or password is announced on the bus (services.accounts) and every API
process closes that user's sockets here; the client reconnects with a fresh token and
gets what its new role allows, or, after a password change, logs in again.

A socket opened with an API key is also filed under the key (`apikey:<id>`), and the
key's revocation is announced on the same channel under that name: only that key's
sockets close.

Counts are per process (a user behind N API processes may hold N times the limits);
they need no shared state that a crashed process could leave behind.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from types import TracebackType
from typing import Final, Self

from starlette.websockets import WebSocket, WebSocketDisconnect

from core.events import USERS_REVOKED_CHANNEL
from core.settings import ApiSettings
from live.bus import Bus
from services.errors import RateLimited, Unauthenticated

logger = logging.getLogger(__name__)

# graphql-transport-ws's "Unauthorized", as for an expired token: authenticate again.
REVOKED_CODE: Final = 4401
REVOKED_REASON: Final = "session revoked"
# Announcements waiting to be handled; beyond it the listener would fall behind.
_ANNOUNCEMENTS_BUFFER: Final = 10_000
# Seconds a revocation is remembered: longer than any connection_init takes.
_REVOKED_MEMORY: Final = 60.0


class UserSessions:
    """The process's WebSockets by user; listens for revocations while entered."""

    def __init__(self, settings: ApiSettings, bus: Bus) -> None:
        self._settings = settings
        self._bus = bus
        self._sockets: defaultdict[str, set[WebSocket]] = defaultdict(set)
        # API key name (services.api_keys.revoked_key_name) -> the sockets opened with it.
        self._key_sockets: defaultdict[str, set[WebSocket]] = defaultdict(set)
        self._key_of: dict[WebSocket, str] = {}
        self._operations: defaultdict[str, int] = defaultdict(int)
        self._revoked_at: dict[str, float] = {}
        self._listener: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        ready = asyncio.get_running_loop().create_future()
        self._listener = asyncio.create_task(self._listen(ready))
        # Subscribed before the API takes a connection: no announcement is missed.
        await ready
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)

    async def _listen(self, ready: asyncio.Future[None]) -> None:
        while True:
            try:
                async with self._bus.subscribe(
                    USERS_REVOKED_CHANNEL,
                    max_buffer=_ANNOUNCEMENTS_BUFFER,
                    on_overflow=lambda: logger.error("user revocations overflowed"),
                ) as announcements:
                    if not ready.done():
                        ready.set_result(None)
                    async for _channel, payload in announcements:
                        self.revoke(payload.decode(errors="replace"))
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("user revocation listener failed; subscribing again")
            if not ready.done():
                ready.set_result(None)
            await asyncio.sleep(1)

    def open(
        self,
        user_id: str,
        websocket: WebSocket,
        *,
        authenticated_at: float,
        key: str | None = None,
    ) -> None:
        """Count a socket of `user_id` (opened with API key `key`, if any), authenticated
        (its user read) at that monotonic time; Unauthenticated when revoked since,
        RateLimited when too many are open."""
        for name in (user_id, key):
            if name is not None and self._revoked_at.get(name, -1.0) >= authenticated_at:
                raise Unauthenticated("Session revoked; authenticate again.")
        sockets = self._sockets[user_id]
        if len(sockets) >= self._settings.websockets_per_user_max:
            raise RateLimited(retry_after=1)
        sockets.add(websocket)
        if key is not None:
            self._key_sockets[key].add(websocket)
            self._key_of[websocket] = key

    def close(self, user_id: str, websocket: WebSocket) -> None:
        """Forget a socket once it is closed."""
        _forget(self._sockets, user_id, websocket)
        key = self._key_of.pop(websocket, None)
        if key is not None:
            _forget(self._key_sockets, key, websocket)

    def operation_allowed(self, user_id: str) -> bool:
        """Whether `user_id` may start one more operation on any of its sockets."""
        return self._operations.get(user_id, 0) < self._settings.subscriptions_per_user_max

    def track_operation(self, user_id: str, task: asyncio.Task[None]) -> None:
        """Count an operation of `user_id` until its task is done."""
        self._operations[user_id] += 1

        def done(_task: asyncio.Task[None]) -> None:
            left = self._operations[user_id] - 1
            if left > 0:
                self._operations[user_id] = left
            else:
                del self._operations[user_id]

        task.add_done_callback(done)

    def revoke(self, user_id: str) -> None:
        """Close every socket of `user_id` in this process, or of one API key when
        `user_id` is a key's name (services.api_keys.revoked_key_name)."""
        now = time.monotonic()
        # Remembered a while for sockets whose user was read before this announcement.
        for stale in [u for u, at in self._revoked_at.items() if now - at > _REVOKED_MEMORY]:
            del self._revoked_at[stale]
        self._revoked_at[user_id] = now
        index = self._key_sockets if ":" in user_id else self._sockets
        sockets = index.pop(user_id, set())
        if sockets:
            logger.info("closing %d WebSocket(s) of %s: session revoked", len(sockets), user_id)
        for websocket in sockets:
            task = asyncio.create_task(_close(websocket))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)


def _forget(index: defaultdict[str, set[WebSocket]], name: str, websocket: WebSocket) -> None:
    sockets = index.get(name)
    if sockets is not None:
        sockets.discard(websocket)
        if not sockets:
            del index[name]


async def _close(websocket: WebSocket) -> None:
    try:
        await websocket.close(code=REVOKED_CODE, reason=REVOKED_REASON)
    except (RuntimeError, OSError, WebSocketDisconnect) as err:
        logger.debug("revoked socket already closed: %s", err)
