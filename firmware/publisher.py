"""The API's MQTT connection for OTA offers: retained, QoS 1, on devices/{id}/ota.

It speaks as this API process's OTA identity, `iot-api-<instance>-ota`, whose
username is also its bound client id and whose `iot-api-ota` role may publish to
devices/+/ota and receive nothing (services.broker_identities.api_identities). It
runs beside core.broker.BrokerAdmin's dynsec connection: offers never queue behind a
reconcile. The API's reconcile creates the identity; until then this reconnects.

An offer is retained, so a device offline at dispatch receives it when it next
subscribes; it is cleared (an empty retained message) once the device finished or
the rollout was cancelled. The connection reconnects with backoff; while it is
down, `offer` and `clear` raise PublishFailed at once and the dispatcher waits.
"""

from __future__ import annotations

import logging

import aiomqtt

from core.reconnecting import Reconnecting
from core.settings import ApiSettings
from services.broker_identities import api_identities

logger = logging.getLogger(__name__)

PUBLISH_TIMEOUT_SECONDS = 10.0


class PublishFailed(Exception):
    """The broker did not take the message (not connected, or no acknowledgement)."""


def offer_topic(device_id: str) -> str:
    return f"devices/{device_id}/ota"


class OfferPublisher(Reconnecting):
    """One reconnecting MQTT connection; an async context manager running it."""

    task_name = "ota-offers"
    # Also the normal end of a session the broker closed (e.g. when a reconcile
    # changed the API identity's roles).
    lost_errors = (aiomqtt.MqttError,)

    def __init__(self, settings: ApiSettings, *, startup_wait_seconds: float = 3.0) -> None:
        super().__init__(startup_wait_seconds=startup_wait_seconds)
        self._settings = settings
        self._client: aiomqtt.Client | None = None
        identities = api_identities(settings)
        # Without MQTT_PASSWORD (a broker without logins) there is nothing to bind.
        self.username = identities[1].username if identities else settings.mqtt_username
        self.password = identities[1].password if identities else None
        self.client_id = self.username

    @property
    def connected(self) -> bool:
        return self._client is not None and self.ready.is_set()

    async def offer(self, device_id: str, payload: bytes, *, retain: bool = True) -> None:
        """Publish `payload` on the device's OTA topic (QoS 1, acknowledged), retained
        unless `retain` is false (a re-send to a device back ONLINE: services.device_resync)."""
        await self._publish(offer_topic(device_id), payload, retain=retain)

    async def clear(self, device_id: str) -> None:
        """Remove the retained offer from the device's OTA topic."""
        await self._publish(offer_topic(device_id), b"", retain=True)

    async def _publish(self, topic: str, payload: bytes, *, retain: bool) -> None:
        client = self._client
        if client is None or not self.ready.is_set():
            raise PublishFailed("no MQTT connection for OTA offers")
        try:
            await client.publish(
                topic, payload, qos=1, retain=retain, timeout=PUBLISH_TIMEOUT_SECONDS
            )
        except aiomqtt.MqttError as err:
            raise PublishFailed(str(err)) from err

    async def _connect_once(self) -> None:
        settings = self._settings
        async with aiomqtt.Client(
            settings.mqtt_host,
            settings.mqtt_port,
            username=self.username,
            password=self.password,
            identifier=self.client_id,
            keepalive=30,
            timeout=PUBLISH_TIMEOUT_SECONDS,
        ) as client:
            self._client = client
            self.ready.set()
            self._backoff.reset()
            logger.info("OTA offer connection open (%s)", settings.mqtt_host)
            # Subscribed to nothing: this only ends when the connection does.
            async for _message in client.messages:
                pass

    def _forget(self) -> None:
        self._client = None

    def _log_lost(self, err: Exception, delay: float) -> None:
        logger.warning("OTA offer connection lost (%s); retry in %.1f s", err, delay)

    def _log_not_ready(self) -> None:
        logger.warning("no MQTT connection for OTA offers yet; dispatch waits for it")
