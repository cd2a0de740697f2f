"""A deleted device's twin: its document, and its retained desired document at the broker.

Apart from services.twins, which reads devices through services.devices: this is what
services.devices calls when a device goes.
"""

from __future__ import annotations

import logging
from typing import Final, Protocol

from bson import ObjectId

from core.dynsec import BrokerUnavailable
from core.topics import TOPIC_KINDS
from models.twins import DeviceTwin

logger = logging.getLogger(__name__)

_DESIRED_KIND: Final = next(kind for kind in TOPIC_KINDS if kind.name == "twin_desired")


class DesiredPublisher(Protocol):
    """The API's broker connection (core.broker.BrokerAdmin) or the worker's MqttSubscriber."""

    async def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> None: ...


def desired_topic(device_id: str) -> str:
    """`devices/{id}/twin/desired`."""
    return _DESIRED_KIND.topic(device_id)


async def forget_twin(device_id: str, publisher: DesiredPublisher) -> None:
    """The twin document goes, and the retained desired document is cleared (an empty
    retained message). Broker trouble is logged, not raised: the device is gone already."""
    await DeviceTwin.get_pymongo_collection().delete_one({"_id": ObjectId(device_id)})
    try:
        await publisher.publish(desired_topic(device_id), b"", qos=1, retain=True)
    except BrokerUnavailable as err:
        logger.warning(
            "retained desired state of deleted device %s not cleared: %s", device_id, err
        )
