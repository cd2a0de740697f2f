"""The rollout dispatcher: runs in every API process, all of them safely at once.

Each pass (every FIRMWARE_DISPATCH_POLL_SECONDS):
1. fails in-flight devices whose deadline passed (per-device timeout), one
   atomic claim each, and settles their rollouts (which may pause them);
2. releases finished devices: clears each retained offer at the broker, then lets
   the device join another rollout (`active` false);
3. dispatches due devices: a rollout's next slot is claimed by compare-and-set
   (rate limit: devices per minute, per rollout), its next PENDING device is
   claimed by a conditional update, then the offer is published, retained, QoS 1.

Every claim is a single-document conditional write, so several API processes
share the work without a lock and no device is offered twice by two of them.
"""

from __future__ import annotations

import asyncio
import json
import logging

from beanie import PydanticObjectId
from pymongo import ReturnDocument
from pymongo.errors import PyMongoError

from core.settings import ApiSettings
from firmware import rollouts
from firmware.events import EventSink, publish_progress
from firmware.progress import expire_one
from firmware.publisher import OfferPublisher, PublishFailed
from models.accounts import utcnow
from models.firmware import (
    TERMINAL,
    Firmware,
    FirmwareUpdate,
    FirmwareUpdateTarget,
    TargetState,
    UpdateState,
)

logger = logging.getLogger(__name__)

# Work done per pass and kind, so one pass stays short whatever the backlog.
MAX_PER_PASS = 100


def offer_payload(firmware: Firmware, update_id: str, base_url: str) -> bytes:
    """The OTA command of contract/devices.md: what to fetch and how to check it."""
    path = f"/firmware/{firmware.id}/download"
    return json.dumps(
        {
            "updateId": update_id,
            "version": firmware.version,
            "url": f"{base_url.rstrip('/')}{path}" if base_url else path,
            "size": firmware.size,
            "sha256": firmware.sha256,
            "signature": firmware.signature,
        },
        separators=(",", ":"),
    ).encode()


class Dispatcher:
    """Dispatches, times out and releases rollout devices; `run` until cancelled."""

    def __init__(self, settings: ApiSettings, publisher: OfferPublisher, events: EventSink) -> None:
        self.settings = settings
        self.publisher = publisher
        self.events = events

    async def run(self) -> None:
        """Pass after pass until cancelled; database trouble waits for the next pass."""
        while True:
            try:
                await self.run_pass()
            except PyMongoError as err:
                logger.warning("firmware dispatcher: database unavailable (%s)", err)
            except Exception:
                logger.exception("firmware dispatcher pass failed")
            await asyncio.sleep(self.settings.firmware_dispatch_poll_seconds)

    async def run_pass(self) -> None:
        """One pass: timeouts, releases, dispatches."""
        await self.expire_overdue()
        await self.release_finished()
        await self.dispatch_due()

    async def expire_overdue(self) -> int:
        """Fail devices past their deadline; how many."""
        count = 0
        while count < MAX_PER_PASS and (target := await expire_one(utcnow())) is not None:
            count += 1
            await publish_progress(self.events, target)
            await rollouts.settle(target.update_id)
        return count

    async def release_finished(self) -> int:
        """Clear finished devices' retained offers and free them; how many were cleared."""
        targets = FirmwareUpdateTarget.get_pymongo_collection()
        finished = {"state": {"$in": list(TERMINAL)}, "active": True}
        await targets.update_many(
            {**finished, "offer_retained": False}, {"$set": {"active": False}}
        )
        cleared = 0
        while cleared < MAX_PER_PASS and self.publisher.connected:
            raw = await targets.find_one({**finished, "offer_retained": True})
            if raw is None:
                break
            try:
                await self.publisher.clear(str(raw["device_id"]))
            except PublishFailed as err:
                logger.warning("retained offer of %s not cleared yet: %s", raw["device_id"], err)
                break
            await targets.update_one(
                {"_id": raw["_id"], "offer_retained": True},
                {"$set": {"offer_retained": False, "active": False}},
            )
            cleared += 1
        return cleared

    async def dispatch_due(self) -> int:
        """Offer due devices their firmware; how many were offered."""
        offered = 0
        firmware_cache: dict[PydanticObjectId, Firmware | None] = {}
        while offered < MAX_PER_PASS and self.publisher.connected:
            now = utcnow()
            update = await rollouts.claim_dispatch(now)
            if update is None:
                break
            target = await rollouts.claim_next_target(update, now)
            if target is None:
                continue
            if update.firmware_id not in firmware_cache:
                firmware_cache[update.firmware_id] = await Firmware.get(update.firmware_id)
            firmware = firmware_cache[update.firmware_id]
            if firmware is None:  # deleteFirmware refuses this; kept for a broken database
                await self._fail(target, "the firmware image no longer exists")
                continue
            payload = offer_payload(firmware, str(update.id), self.settings.firmware_base_url)
            try:
                await self.publisher.offer(str(target.device_id), payload)
            except PublishFailed as err:
                logger.warning("offer to %s not published (%s); retried", target.device_id, err)
                await self._unclaim(update, target)
                break
            offered += 1
            await publish_progress(self.events, target)
        return offered

    async def _unclaim(self, update: FirmwareUpdate, target: FirmwareUpdateTarget) -> None:
        """Put a device whose offer did not go out back in line, first."""
        await FirmwareUpdateTarget.get_pymongo_collection().update_one(
            {"_id": target.id, "state": TargetState.DISPATCHED},
            {"$set": {"state": TargetState.PENDING, "dispatched_at": None, "deadline": None}},
        )
        await FirmwareUpdate.get_pymongo_collection().update_one(
            {"_id": update.id, "state": UpdateState.RUNNING},
            {"$set": {"has_pending": True, "next_dispatch_at": utcnow()}},
        )

    async def _fail(self, target: FirmwareUpdateTarget, error: str) -> None:
        raw = await FirmwareUpdateTarget.get_pymongo_collection().find_one_and_update(
            {"_id": target.id, "state": TargetState.DISPATCHED},
            {"$set": {"state": TargetState.FAILED, "error": error, "deadline": None}},
            return_document=ReturnDocument.AFTER,
        )
        if raw is not None:
            await publish_progress(self.events, FirmwareUpdateTarget.model_validate(raw))
            await rollouts.settle(target.update_id)
