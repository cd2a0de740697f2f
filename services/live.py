"""Live feeds: the channel a viewer listens on, and the events it may be shown."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, Protocol

from core.events import Kind, ReadingEvent, StatusEvent, all_channel, device_channel, owner_channel
from live.bus import Bus, OverflowCallback, Subscription
from models.accounts import User
from models.devices import DeviceStatus
from services import access
from services.access import Viewer, may
from services.devices import get_device

logger = logging.getLogger(__name__)


class OwnedEvent(Protocol):
    @property
    def device_id(self) -> str: ...

    @property
    def owner_id(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Feed:
    """One viewer's channel, and the rule every event on it must pass."""

    channel: str
    viewer: Viewer
    kind: access.Kind
    device_id: str | None = None
    # Further channels listened on (one per organization of a member of several).
    more_channels: tuple[str, ...] = ()

    @property
    def viewer_id(self) -> str:
        return self.viewer.id

    def allows(self, event: OwnedEvent) -> bool:
        """Checked per event, whatever the channel: a wrong channel or a device that
        changed hands must not leak another tenant's data."""
        if self.device_id is not None and event.device_id != self.device_id:
            return False
        return may(self.viewer, "read", self.kind, event.owner_id)


def organizations_feed(
    principal: Viewer, kind: access.Kind, channel_of: Callable[[str], str]
) -> Feed:
    """The feed of every device of the principal's organizations: their owner channels
    (events carry their organization as owner_id; docs/access.md)."""
    channels = [channel_of(organization_id) for organization_id in sorted(principal.memberships)]
    if not channels:  # a member of none: its own channel, which nothing is published on
        channels = [channel_of(principal.id)]
    return Feed(channels[0], principal, kind, more_channels=tuple(channels[1:]))


async def feed_for(viewer: User, kind: Kind, device_id: str | None = None) -> Feed:
    """The feed of one device the viewer may see (NotFound otherwise), or, without a
    device, of all the viewer's devices (an ADMIN's: everyone's)."""
    principal = access.viewer_of(viewer)
    if device_id is not None:
        device = await get_device(viewer, device_id)
        own_id = str(device.id)
        channel = device_channel(kind, own_id)
        return Feed(channel, principal, "reading_stream", device_id=own_id)
    if access.sees_all(viewer, "reading_stream"):
        return Feed(all_channel(kind), principal, "reading_stream")
    return organizations_feed(
        principal, "reading_stream", lambda organization_id: owner_channel(kind, organization_id)
    )


def decode_status(raw: bytes) -> StatusEvent:
    """A StatusEvent whose status is one of DeviceStatus; ValueError otherwise."""
    event = StatusEvent.decode(raw)
    DeviceStatus(event.status)
    return event


@asynccontextmanager
async def watch[E: OwnedEvent](
    bus: Bus,
    feed: Feed,
    decode: Callable[[bytes], E],
    *,
    max_buffer: int,
    on_overflow: OverflowCallback,
) -> AsyncIterator[AsyncIterator[E]]:
    """The feed's events that pass its rule, while the block runs; unsubscribes on exit."""
    async with bus.subscribe(
        feed.channel, *feed.more_channels, max_buffer=max_buffer, on_overflow=on_overflow
    ) as subscription:
        yield _allowed(subscription, feed, _decoded_once(decode))


@cache
def _decoded_once(decode: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    # The bus hands every local subscriber of a channel the same payload: with a
    # thousand subscribers on one channel, decode it once rather than a thousand times
    # (the events are frozen, so sharing one is safe).
    return lru_cache(maxsize=1024)(decode)


async def _allowed[E: OwnedEvent](
    subscription: Subscription, feed: Feed, decode: Callable[[bytes], E]
) -> AsyncIterator[E]:
    async for channel, raw in subscription:
        try:
            event = decode(raw)
        except (KeyError, ValueError, TypeError) as err:
            logger.warning("undecodable event on %s dropped: %s", channel, err)
            continue
        if feed.allows(event):
            yield event
        else:
            logger.warning(
                "event of device %s (organization %s) on %s withheld from user %s",
                event.device_id,
                event.owner_id,
                channel,
                feed.viewer_id,
            )


__all__ = [
    "Feed",
    "ReadingEvent",
    "StatusEvent",
    "decode_status",
    "feed_for",
    "organizations_feed",
    "watch",
]
