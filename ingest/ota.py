"""OTA progress reports (devices/{id}/ota/progress): validate, store, publish, settle.

A report is dropped and counted (never stored) when it is malformed
(`bad_ota_progress`), names no rollout (`ota_unknown_update`), comes from a device
the rollout does not target (`ota_wrong_device`; the broker already makes the topic
the sender's own), or would move the device backwards or past its end
(`ota_backwards`). A stored report is acknowledged only once written, its live
event published and, for a final state, its rollout settled (finished or paused);
while MongoDB is away the report waits, holding back the stream like storage does.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from pymongo.errors import PyMongoError
from redis.asyncio import Redis

from core.backoff import RETRY, Backoff
from firmware import rollouts
from firmware.events import RedisSink, publish_progress
from firmware.progress import Report, ReportRejected, apply_report
from ingest.devices import DeviceInfo
from ingest.payloads import Reason, Rejected, parse_ota_progress
from ingest.source import Delivery
from ingest.stats import IngestStats
from models.firmware import TERMINAL, TargetState

logger = logging.getLogger(__name__)

_REASONS: dict[str, Reason] = {
    "unknown_update": "ota_unknown_update",
    "wrong_device": "ota_wrong_device",
    "backwards": "ota_backwards",
}


class OtaProgressHandler:
    """Handles one report at a time for the worker; drops raise Rejected (the worker counts)."""

    def __init__(self, redis: Redis, stats: IngestStats) -> None:
        self.events = RedisSink(redis)
        self.stats = stats

    async def handle(self, delivery: Delivery, device: DeviceInfo) -> None:
        """Apply one report from `device`, then acknowledge it."""
        parsed = parse_ota_progress(delivery.payload)
        report = Report(
            update_id=parsed.update_id,
            state=TargetState(parsed.state),
            progress=parsed.progress,
            error=parsed.error,
        )
        try:
            target = await patiently(lambda: apply_report(device.device_id, report))
        except ReportRejected as rejected:
            raise Rejected(_REASONS[rejected.reason]) from rejected
        await publish_progress(self.events, target)
        if target.state in TERMINAL:
            await patiently(lambda: rollouts.settle(target.update_id))
        delivery.ack()


async def patiently[T](step: Callable[[], Awaitable[T]]) -> T:
    """Run `step` until MongoDB answers (each step is safe to repeat)."""
    backoff: Backoff | None = None  # made on a failure: this is the per-message path
    while True:
        try:
            return await step()
        except PyMongoError as err:
            logger.warning("OTA progress not stored yet (%s); retrying", err)
            backoff = backoff or Backoff(RETRY)
            await backoff.sleep()
