"""Device twins in the worker: reports merged into reported, twin/get answered.

`devices/{id}/twin/reported`: a JSON object of at most 16 KiB (contract/devices.md),
merged into reported (RFC 7396) with one guarded write (services.twins), then the
whole twin is published live. Dropped and counted: over 16 KiB (`too_large`), not a
JSON object or breaking the document rules (`bad_twin_reported`), a result over
TWIN_MAX_BYTES (`twin_too_large`), a device gone (`unknown_device`), and a retained
message replayed by the broker (`twin_retained`: old news, it could undo newer reports).

`devices/{id}/twin/get` (payload ignored, at most 16 KiB): the current desired
document is published again, retained and QoS 1, on the worker's own connection
(its identity may publish twin/desired: core.topics). Retained, so that a document
the broker lost is restored too.

While MongoDB is away a message waits, holding back the stream like storage does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from pymongo.errors import PyMongoError
from redis.asyncio import Redis

from core.backoff import RETRY, Backoff
from firmware.events import RedisSink
from ingest.devices import DeviceInfo
from ingest.payloads import Rejected
from ingest.source import Delivery, PublishRefused
from services import twins
from services.errors import Conflict, NotFound
from services.twin_cleanup import DesiredPublisher
from services.twin_documents import DocumentTooLarge, InvalidDocument

logger = logging.getLogger(__name__)

# The contract's limit of a twin message.
MAX_TWIN_PAYLOAD_BYTES: Final = 16 * 1024


def _reject_constant(_name: str) -> float:
    raise ValueError("NaN and Infinity are not JSON")


def parse_reported(payload: bytes) -> dict[str, Any]:
    """A report's JSON object (its keys not checked yet); Rejected otherwise."""
    if len(payload) > MAX_TWIN_PAYLOAD_BYTES:
        raise Rejected("too_large")
    try:
        document = json.loads(payload, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise Rejected("bad_twin_reported") from err
    if not isinstance(document, dict):
        raise Rejected("bad_twin_reported")
    return document


class TwinHandler:
    """Handles one twin message at a time for the worker; drops raise Rejected."""

    def __init__(
        self,
        redis: Redis,
        *,
        max_bytes: int,
        publisher: Callable[[], DesiredPublisher | None],
    ) -> None:
        self._events = RedisSink(redis)
        self._max_bytes = max_bytes
        # The worker's current MQTT connection (None between connections).
        self._publisher = publisher

    async def reported(self, delivery: Delivery, device: DeviceInfo) -> None:
        """Merge a report into reported, publish the twin live, then acknowledge."""
        if delivery.retain:
            raise Rejected("twin_retained")
        patch = parse_reported(delivery.payload)
        try:
            twin = await _patiently(
                lambda: twins.apply_reported(device.device_id, patch, max_bytes=self._max_bytes)
            )
        except DocumentTooLarge as err:
            raise Rejected("twin_too_large") from err
        except InvalidDocument as err:
            raise Rejected("bad_twin_reported") from err
        except NotFound as err:
            raise Rejected("unknown_device") from err
        if twin is not None:
            await twins.announce(self._events, twin, device.owner_id)
        delivery.ack()

    async def get(self, delivery: Delivery, device: DeviceInfo) -> None:
        """Publish the device's current desired document again, then acknowledge."""
        if delivery.retain:
            raise Rejected("twin_retained")
        if len(delivery.payload) > MAX_TWIN_PAYLOAD_BYTES:
            raise Rejected("too_large")
        publisher = self._publisher()
        if publisher is None:
            return  # no connection: the broker delivers the request again
        twin = await _patiently(lambda: twins.read_twin(device.device_id))
        try:
            await _patiently(lambda: twins.publish_desired(publisher, twin))
        except PublishRefused as err:
            # The worker's role lacks the right: a deployment error, not the device's.
            logger.warning("twin/get of device %s not answered: %s", device.device_id, err)
        delivery.ack()


async def _patiently[T](step: Callable[[], Awaitable[T]]) -> T:
    """Run `step` until MongoDB answers and the write wins its guard (each step is safe
    to repeat); a report is not lost to a twin that many others change at once."""
    backoff: Backoff | None = None  # made on a failure: this is the per-message path
    while True:
        try:
            return await step()
        except (PyMongoError, Conflict) as err:
            logger.warning("twin not read or written yet (%s); retrying", err)
            backoff = backoff or Backoff(RETRY)
            await backoff.sleep()
