"""What a device must have again when it comes ONLINE: its desired twin and its OTA offer.

Nothing a device needs depends on the broker's retained store: a clustered RabbitMQ
keeps retained messages per node, so a device reconnecting to another node would not
see them. On every ONLINE transition (the worker's status event, which every API
process hears: services.command_dispatch) the device is sent, through the publishers
that sent the originals:

- its desired document `{"version": n, "desired": {...}}` when desired was ever set
  (version > 0), by services.twins.publish_desired: retained, as on every change, so
  on Mosquitto a document the broker lost is restored too;
- the offer of its rollout while the device is in flight (DISPATCHED to INSTALLING),
  not retained: the rollout dispatcher owns the retained offer and clears it once the
  device finished, and a retained re-send racing that clear could leave a stale offer.

Repeats are harmless: the device may get the retained copy and the re-send, and both
carry what identifies them (the twin's `version`, the offer's `updateId`), which the
device compares with what it already applied (docs/devices.md). Of the API processes
hearing one event, the first to claim it in Redis sends; without Redis each one does.
A re-send the broker does not take is logged and left: the device still has twin/get,
and the retained copy where the broker keeps one.
"""

from __future__ import annotations

import logging
from typing import Final, Protocol

from bson import ObjectId
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.dynsec import BrokerUnavailable
from core.events import StatusEvent
from firmware.dispatcher import offer_payload
from firmware.publisher import PublishFailed
from models.firmware import IN_FLIGHT, Firmware, FirmwareUpdateTarget
from services.twin_cleanup import DesiredPublisher
from services.twins import publish_desired, read_twin

logger = logging.getLogger(__name__)

CLAIM_PREFIX: Final = "resync:"
# Long enough for every API process to have heard the event; the key names the event.
CLAIM_MS: Final = 60_000


class OfferSender(Protocol):
    """The API's OTA connection (firmware.publisher.OfferPublisher)."""

    async def offer(self, device_id: str, payload: bytes, *, retain: bool = True) -> None: ...


async def current_offer(device_id: ObjectId, base_url: str) -> bytes | None:
    """The offer of the device's rollout while the device is in flight; None otherwise."""
    raw = await FirmwareUpdateTarget.get_pymongo_collection().find_one(
        {"device_id": device_id, "active": True, "state": {"$in": [s.value for s in IN_FLIGHT]}},
        {"update_id": 1, "firmware_id": 1},
    )
    if raw is None:
        return None
    firmware = await Firmware.get(raw["firmware_id"])
    if firmware is None:  # deleteFirmware refuses this while a rollout uses it
        return None
    return offer_payload(firmware, str(raw["update_id"]), base_url)


class StateResender:
    """Sends a device coming ONLINE its desired document and its in-flight offer."""

    def __init__(
        self,
        desired: DesiredPublisher,
        offers: OfferSender,
        redis: Redis,
        *,
        firmware_base_url: str,
    ) -> None:
        self.desired = desired
        self.offers = offers
        self.redis = redis
        self.firmware_base_url = firmware_base_url

    async def on_online(self, event: StatusEvent) -> bool:
        """Re-send the device's state unless another API process claimed this event;
        whether this one did."""
        if not await self._claim(event):
            return False
        await self.resend(ObjectId(event.device_id))
        return True

    async def resend(self, device_id: ObjectId) -> tuple[bool, bool]:
        """Send the desired document and the current offer; whether each was sent.
        Raises the database's errors (the caller retries on the next ONLINE)."""
        twin = await read_twin(device_id)
        sent_twin = False
        if twin.version:
            try:
                await publish_desired(self.desired, twin)
                sent_twin = True
            except BrokerUnavailable as err:
                logger.warning("desired state of %s not re-sent: %s", device_id, err)
        offer = await current_offer(device_id, self.firmware_base_url)
        sent_offer = False
        if offer is not None:
            try:
                await self.offers.offer(str(device_id), offer, retain=False)
                sent_offer = True
            except PublishFailed as err:
                logger.warning("OTA offer of %s not re-sent: %s", device_id, err)
        return sent_twin, sent_offer

    async def _claim(self, event: StatusEvent) -> bool:
        """Whether this process sends for `event` (the first to claim it; any without Redis)."""
        if event.last_seen is None:
            return True
        key = f"{CLAIM_PREFIX}{event.device_id}:{event.last_seen.isoformat()}"
        try:
            return bool(await self.redis.set(key, 1, nx=True, px=CLAIM_MS))
        except RedisError as err:
            logger.warning("re-send claim unavailable (%s); sending anyway", err)
            return True
