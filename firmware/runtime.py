"""What the API process runs for firmware: the signer, the offer connection, the dispatcher."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from core.settings import ApiSettings
from firmware import storage
from firmware.dispatcher import Dispatcher
from firmware.events import EventSink
from firmware.publisher import OfferPublisher
from firmware.signing import Signer, signer_for

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FirmwareRuntime:
    signer: Signer
    publisher: OfferPublisher
    dispatcher: Dispatcher


@asynccontextmanager
async def open_firmware(settings: ApiSettings, events: EventSink) -> AsyncIterator[FirmwareRuntime]:
    """Load the signing key (a production API without one does not start), open the
    offer connection and run the dispatcher until the block ends."""
    signer = signer_for(settings)
    logger.info("firmware signing public key: %s", signer.public_key)
    await storage.ensure_indexes()
    async with OfferPublisher(settings) as publisher:
        dispatcher = Dispatcher(settings, publisher, events)
        task = asyncio.create_task(dispatcher.run(), name="firmware-dispatcher")
        try:
            yield FirmwareRuntime(signer=signer, publisher=publisher, dispatcher=dispatcher)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
