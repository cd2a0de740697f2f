"""Sends QUEUED commands to devices: runs in every API process, all of them safely at once.

- sendCommand drains an ONLINE device's queue at once (in the request);
- a device coming ONLINE (the worker's status event on `status:all`) has its queue
  drained by every API process that hears it: the atomic claims hand each command to
  exactly one of them;
- a sweep every COMMAND_SWEEP_SECONDS expires overdue commands (bounded batches) and
  drains ONLINE devices whose queue is not empty (a status event missed while Redis or
  this process was away; the scan goes round the queue a bounded slice per pass).

Order: one device's commands go out in creation order. Each claim takes the oldest,
and a short per-device lease in Redis lets one process at a time drain a device. A
process that finds the lease taken leaves a "look again" mark and tries once more
(the holder may just have let go); the holder, after letting go, drains again when it
finds the mark, so a command queued meanwhile is not left behind. Without Redis the
lease is skipped: still exactly once, order best effort.
A publish that fails (broker away) puts its command back in line, first.

`on_online` (services.device_resync) runs for each ONLINE event before the drain, in
the same bounded slots: what else a device must have again when it connects.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Final, Protocol

from bson import ObjectId
from pymongo.errors import PyMongoError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.dynsec import BrokerUnavailable
from core.events import StatusEvent, all_channel
from core.settings import ApiSettings
from live.bus import Bus
from models.accounts import utcnow
from models.commands import Command
from models.devices import Device, DeviceStatus
from services.command_queue import (
    claim_next,
    command_topic,
    device_payload,
    expire_due,
    has_queued,
    publish_command,
    queued_devices,
    unclaim,
)

logger = logging.getLogger(__name__)

# Work done per sweep, so a pass stays short whatever the backlog.
MAX_PER_PASS: Final = 500
LEASE_MS: Final = 10_000
LEASE_PREFIX: Final = "commands:lease:"
AGAIN_PREFIX: Final = "commands:again:"
# Drains running at once for status events; more wait (the status events are bursty
# when a broker comes back and its whole fleet reconnects).
MAX_CONCURRENT_DRAINS: Final = 32
STATUS_BUFFER: Final = 10_000
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"
_NO_LEASE: Final = ""  # Redis unavailable: go on without one

type OnOnline = Callable[[StatusEvent], Awaitable[object]]


class CommandPublisher(Protocol):
    """The API's broker connection (core.broker.BrokerAdmin): QoS 1, acknowledged."""

    @property
    def connected(self) -> bool: ...

    async def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> None: ...


class CommandDispatcher:
    """Drains device queues on demand, on status events and in a periodic sweep."""

    def __init__(
        self,
        settings: ApiSettings,
        publisher: CommandPublisher,
        bus: Bus,
        redis: Redis,
        *,
        on_online: OnOnline | None = None,
    ) -> None:
        self.settings = settings
        self.publisher = publisher
        self.bus = bus
        self.redis = redis
        self._on_online = on_online
        # The latest ONLINE event of each device waiting for `on_online`.
        self._online: dict[ObjectId, StatusEvent] = {}
        self._scan_after: ObjectId | None = None
        self._draining: set[ObjectId] = set()
        self._again: set[ObjectId] = set()
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_DRAINS)
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ one device
    async def drain(self, device_id: ObjectId) -> list[Command]:
        """Send the device's QUEUED commands, oldest first; the ones this call sent."""
        sent: list[Command] = []
        for _ in range(3):  # marked while we held the lease: look again
            token = await self._lease(device_id)
            if token is None:
                return sent  # the holder drains it, and looks again for our mark
            try:
                while (command := await claim_next(device_id, utcnow())) is not None:
                    try:
                        await self.publisher.publish(
                            command_topic(str(device_id), str(command.id)),
                            device_payload(command),
                            qos=1,
                            retain=False,
                        )
                    except BrokerUnavailable as err:
                        logger.warning("command %s not sent (%s); stays queued", command.id, err)
                        await unclaim(command)
                        return sent
                    sent.append(command)
                    await publish_command(self.bus, command)
            finally:
                await self._release(device_id, token)
            if not await self._marked(device_id, token):
                break
        return sent

    async def _lease(self, device_id: ObjectId) -> str | None:
        """A token holding the device's lease; None when another process holds it (and
        knows to look again); _NO_LEASE without Redis."""
        token = uuid.uuid4().hex
        key = f"{LEASE_PREFIX}{device_id}"
        try:
            if await self.redis.set(key, token, nx=True, px=LEASE_MS):
                return token
            await self.redis.set(f"{AGAIN_PREFIX}{device_id}", 1, px=LEASE_MS)
            # The holder may have let go before our mark: then it is ours.
            return token if await self.redis.set(key, token, nx=True, px=LEASE_MS) else None
        except RedisError as err:
            logger.warning("command lease unavailable (%s); sending without it", err)
            return _NO_LEASE

    async def _marked(self, device_id: ObjectId, token: str) -> bool:
        """Whether another process asked for a drain while we held the lease (unmarks)."""
        if token == _NO_LEASE:
            return False
        try:
            return bool(await self.redis.getdel(f"{AGAIN_PREFIX}{device_id}"))
        except RedisError as err:
            logger.warning("command lease mark unreadable (%s); looking again", err)
            return await has_queued(device_id, utcnow())

    async def _release(self, device_id: ObjectId, token: str) -> None:
        if token == _NO_LEASE:
            return
        try:
            await self.redis.eval(_RELEASE, 1, f"{LEASE_PREFIX}{device_id}", token)
        except RedisError as err:
            logger.warning("command lease not released (%s); it lapses", err)

    # ------------------------------------------------------------ background
    async def run(self) -> None:
        """Follow status events and sweep, until cancelled."""
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._follow_status(), name="commands-status")
                tasks.create_task(self._sweep_forever(), name="commands-sweep")
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _follow_status(self) -> None:
        channel = all_channel("status")
        while True:
            async with self.bus.subscribe(
                channel, max_buffer=STATUS_BUFFER, on_overflow=_status_overflow
            ) as subscription:
                async for _channel, raw in subscription:
                    try:
                        event = StatusEvent.decode(raw)
                        device_id = ObjectId(event.device_id)
                    except (KeyError, ValueError, TypeError) as err:
                        logger.warning("undecodable status event ignored: %s", err)
                        continue
                    if event.status == DeviceStatus.ONLINE:
                        if self._on_online is not None:
                            self._online[device_id] = event
                        self._drain_soon(device_id)
            # Overflowed (the sweep catches up with what was lost), or the bus closed.
            await asyncio.sleep(self.settings.command_sweep_seconds)

    def _drain_soon(self, device_id: ObjectId) -> None:
        if device_id in self._draining:
            self._again.add(device_id)  # this process drains it: once more after
            return
        self._draining.add(device_id)
        task = asyncio.create_task(self._drain_in_background(device_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain_in_background(self, device_id: ObjectId) -> None:
        try:
            async with self._slots:
                while True:
                    self._again.discard(device_id)
                    await self._run_on_online(device_id)
                    try:
                        await self.drain(device_id)
                    except PyMongoError as err:
                        logger.warning("commands of %s not sent yet (%s)", device_id, err)
                        return  # the sweep retries
                    if device_id not in self._again:
                        return
        finally:
            self._draining.discard(device_id)
            self._again.discard(device_id)
            self._online.pop(device_id, None)

    async def _run_on_online(self, device_id: ObjectId) -> None:
        event = self._online.pop(device_id, None)
        if event is None or self._on_online is None:
            return
        try:
            await self._on_online(event)
        except PyMongoError as err:
            logger.warning("ONLINE step of %s skipped (%s)", device_id, err)
        except Exception:  # the commands are drained whatever happened here
            logger.exception("ONLINE step of %s failed", device_id)

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except PyMongoError as err:
                logger.warning("command sweep: database unavailable (%s)", err)
            except Exception:
                logger.exception("command sweep failed")
            await asyncio.sleep(self.settings.command_sweep_seconds)

    async def sweep(self) -> tuple[int, int]:
        """One pass: expire overdue commands, drain ONLINE devices with a queue; counts."""
        expired = await expire_due(utcnow(), MAX_PER_PASS)
        for command in expired:
            await publish_command(self.bus, command)
        if not self.publisher.connected:
            return len(expired), 0
        devices, self._scan_after = await queued_devices(self._scan_after, MAX_PER_PASS)
        if not devices:
            return len(expired), 0
        online = await Device.get_pymongo_collection().distinct(
            "_id", {"_id": {"$in": list(devices)}, "status": DeviceStatus.ONLINE.value}
        )
        sent = 0
        for device_id in online:
            sent += len(await self.drain(device_id))
        return len(expired), sent


@asynccontextmanager
async def open_commands(
    settings: ApiSettings,
    publisher: CommandPublisher,
    bus: Bus,
    redis: Redis,
    *,
    on_online: OnOnline | None = None,
) -> AsyncIterator[CommandDispatcher]:
    """A dispatcher following status events and sweeping until the block ends."""
    dispatcher = CommandDispatcher(settings, publisher, bus, redis, on_online=on_online)
    task = asyncio.create_task(dispatcher.run(), name="command-dispatcher")
    try:
        yield dispatcher
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _status_overflow() -> None:
    logger.warning("status events came faster than commands were sent; the sweep catches up")
