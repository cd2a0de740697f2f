"""The worker's MQTT 5 session: `MqttSubscriber`, one connection read in batches.

CONNECT with clean start off, session expiry and Receive Maximum; SUBSCRIBE;
PINGREQ keepalive; DISCONNECT; the worker's few QoS 1 publishes (twin/get answers).
Every PUBLISH of a socket read is handed to the worker in one batch
(`ingest.mqtt.connection`), and the PUBACKs of a stored batch go out in one write.
Reconnection with backoff is the worker's loop
(`IngestWorker._consume`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Self

from ingest.mqtt.codec import (
    PINGREQ_PACKET,
    SERVER_KEEP_ALIVE,
    SubAck,
    encode_connect,
    encode_publish,
    encode_subscribe,
)
from ingest.mqtt.connection import (
    Connection,
    Delivery,
    MqttConnectFailed,
    MqttConnectionLost,
    PublishRefused,
    describe_reason,
)

logger = logging.getLogger(__name__)


class MqttSubscriber:
    """One MQTT 5 connection of a persistent session, read in batches.

    `async with MqttSubscriber(...) as client:` connects (CONNECT/CONNACK) and
    subscribes to `subscriptions` (or later `await client.subscribe(...)`), then
    `async for batch in client.batches():`; each delivery's `ack()` queues its PUBACK.
    Raises MqttClientError subclasses. The worker's `DeliverySource` (ingest.source).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str,
        username: str | None = None,
        password: str | None = None,
        clean_start: bool = False,
        session_expiry: int = 0,
        receive_maximum: int = 65535,
        keepalive: int = 30,
        timeout: float = 10.0,
        read_pause: float = 0.0,
        ssl_context: ssl.SSLContext | None = None,
        subscriptions: list[tuple[str, int]] | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._client_id = client_id
        self._username = username
        self._password = password
        self._clean_start = clean_start
        self._session_expiry = session_expiry
        self._receive_maximum = receive_maximum
        self._keepalive = keepalive
        self._timeout = timeout
        self._read_pause = read_pause
        self._ssl = ssl_context
        self._subscriptions = subscriptions or []
        self._connection: Connection | None = None
        self._pinger: asyncio.Task[None] | None = None
        self._next_packet_id = 1
        self.session_present = False

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        # Room for every unacknowledged message, and as much again of QoS 0.
        inbox_limit = 2 * self._receive_maximum
        try:
            async with asyncio.timeout(self._timeout):
                _, connection = await loop.create_connection(
                    lambda: Connection(inbox_limit=inbox_limit, read_pause=self._read_pause),
                    self._host,
                    self._port,
                    ssl=self._ssl,
                )
                self._connection = connection
                connection.send(
                    encode_connect(
                        client_id=self._client_id,
                        username=self._username,
                        password=self._password,
                        clean_start=self._clean_start,
                        keepalive=self._keepalive,
                        session_expiry=self._session_expiry,
                        receive_maximum=self._receive_maximum,
                    )
                )
                connack = await connection.connack
        except (OSError, TimeoutError, MqttConnectionLost) as err:
            self._close()
            raise MqttConnectFailed(
                f"cannot connect to {self._host}:{self._port}: {str(err) or type(err).__name__}"
            ) from err
        if connack.reason_code >= 0x80:
            self._close()
            detail = describe_reason(connack.reason_code)
            raise MqttConnectFailed(f"the broker refused the connection: {detail}")
        self.session_present = connack.session_present
        keepalive = connack.properties.get(SERVER_KEEP_ALIVE, self._keepalive)
        if keepalive:
            self._pinger = asyncio.create_task(self._ping(connection, keepalive))
        if self._subscriptions:
            try:
                await self.subscribe(self._subscriptions)
            except BaseException:
                self._close()
                raise
        return self

    @property
    def description(self) -> str:
        return f"MQTT {self._host}:{self._port}"

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        connection = self._connection
        try:
            if connection is not None and connection.lost is None:
                # Normal: the broker keeps the session.
                await connection.disconnect(grace=min(self._timeout, 2.0))
        finally:
            self._close()

    def _close(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
            self._pinger = None
        if self._connection is not None:
            self._connection.close()

    def _current(self) -> Connection:
        if self._connection is None:
            raise MqttConnectionLost("not connected")
        if self._connection.lost is not None:
            raise self._connection.lost
        return self._connection

    async def subscribe(self, filters: list[tuple[str, int]]) -> tuple[int, ...]:
        """Subscribe to (filter, maximum QoS) pairs; the granted QoS of each.

        MqttConnectFailed when the broker refuses any of them.
        """
        connection = self._current()
        packet_id = self._next_packet_id
        self._next_packet_id = packet_id % 0xFFFF + 1
        future: asyncio.Future[SubAck] = asyncio.get_running_loop().create_future()
        connection.expect_suback(packet_id, future)
        connection.send(encode_subscribe(packet_id, filters))
        try:
            async with asyncio.timeout(self._timeout):
                suback = await future
        except TimeoutError as err:
            raise MqttConnectionLost("no SUBACK from the broker") from err
        refused = [
            f"{topic}: {describe_reason(code)}"
            for (topic, _), code in zip(filters, suback.reason_codes, strict=False)
            if code >= 0x80
        ]
        if refused or len(suback.reason_codes) != len(filters):
            detail = ", ".join(refused) or "SUBACK mismatch"
            raise MqttConnectFailed(f"subscription refused: {detail}")
        return suback.reason_codes

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish and, at QoS 1, wait for the broker's PUBACK.

        MqttConnectionLost when the connection ends or no PUBACK comes in time,
        PublishRefused when the broker refuses it (MQTT 5 reason >= 0x80, e.g. an ACL).
        """
        connection = self._current()
        packet_id = self._next_packet_id
        self._next_packet_id = packet_id % 0xFFFF + 1
        packet = encode_publish(topic, payload, packet_id=packet_id, qos=qos, retain=retain)
        if not qos:
            connection.send(packet)
            return
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        connection.expect_puback(packet_id, future)
        connection.send(packet)
        try:
            async with asyncio.timeout(self._timeout):
                reason = await future
        except TimeoutError as err:
            raise MqttConnectionLost("no PUBACK from the broker") from err
        finally:
            connection.pubacks.pop(packet_id, None)
        if reason >= 0x80:
            raise PublishRefused(f"{topic}: {describe_reason(reason)}")

    async def batches(self) -> AsyncIterator[list[Delivery]]:
        """The messages received, a batch per wakeup (one or more socket reads), in order.

        Raises MqttConnectionLost when the connection ends; what was received and not
        yet taken is dropped then (unacknowledged, the broker sends it again).
        """
        connection = self._current()
        while True:
            if connection.lost is not None:
                raise connection.lost
            batch = connection.take()
            if batch:
                yield batch
            else:
                await connection.wait()

    async def _ping(self, connection: Connection, interval: float) -> None:
        """PINGREQ every keepalive interval; no PINGRESP by the next one: the link is dead."""
        while connection.lost is None:
            await asyncio.sleep(interval)
            if connection.ping_outstanding:
                logger.warning("no PINGRESP within %.0f s: closing the connection", interval)
                connection._abort("keepalive timeout")
                return
            connection.ping_outstanding = True
            connection.send(PINGREQ_PACKET)
