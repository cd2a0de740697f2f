"""RabbitMQ as the worker's source (INGEST_SOURCE=amqp): quorum queues, competing consumers.

RabbitMQ's MQTT plugin publishes what devices send to the `amq.topic` exchange, the
topic's `/` turned into `.` (`devices/{id}/telemetry` routes as
`devices.{id}.telemetry`). The worker declares one durable quorum queue per topic kind
it consumes (core.topics.CONSUMED), `iot-ingest.<kind>`, bound to `amq.topic` with the
kind's pattern (`devices.*.telemetry`): a quorum queue is replicated over the cluster's
nodes and survives the loss of a minority of them. Every worker declares the same
queues (declaring is idempotent) and consumes all of them: N workers are competing
consumers, each message goes to one of them.

Acknowledgement after handling: `AmqpDelivery.ack()` queues a basic.ack that goes out
on the next turn of the event loop; a message never acknowledged (the worker died, the
connection ended) is delivered again, marked redelivered, to whichever worker consumes
next. The prefetch (AMQP_PREFETCH, per queue) bounds what a worker holds unacknowledged.

Deduplication (ingest.store): quorum queues give a message no id of its own, so a
message's key is made of its topic and payload (`origin`), the same in every worker. A
delivery counts as a possible duplicate (`dup`) when RabbitMQ redelivers it or the
device resent it (MQTT DUP flag, the plugin's `x-mqtt-dup` header); only those are
checked against what is stored. So a redelivered message whose topic and payload equal
an earlier stored one's is taken for it: a device that sends identical payloads with
no timestamp may lose such a repeat, only after a crash or a resend.

Reconnection is the worker's loop (a new `AmqpSource` after a backoff), not aio-pika's
robust connection: a delivery tag is only valid on its channel, so deliveries held
across a reconnect must not be acknowledged on the new one; their acks are dropped and
RabbitMQ delivers them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Self

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from aiormq.abc import DeliveredMessage
from pamqp.common import FieldTable
from yarl import URL

from core.topics import CONSUMED
from ingest.source import Delivery, PublishRefused, SourceError
from services.broker_rules import INGEST_QUEUE_PREFIX

logger = logging.getLogger(__name__)

EXCHANGE: Final = "amq.topic"
QUORUM: Final[FieldTable] = {"x-queue-type": "quorum"}
# The MQTT plugin's header of a PUBLISH's DUP flag (rabbit_mqtt_processor, 3.x).
MQTT_DUP_HEADER: Final = "x-mqtt-dup"

# What aio-pika and aiormq raise when the node, the connection or a channel goes.
AMQP_ERRORS: Final = (
    aio_pika.exceptions.AMQPException,
    aiormq.exceptions.AMQPError,
    ConnectionError,
    OSError,
    TimeoutError,
)


class AmqpSourceError(SourceError):
    """The AMQP connection could not be made, or ended."""


def binding_key(pattern: str) -> str:
    """An MQTT filter as the routing pattern the MQTT plugin gives it (`+` -> `*`)."""
    return pattern.replace("/", ".").replace("+", "*")


def mqtt_topic(routing_key: str) -> str:
    """The MQTT topic the plugin turned into `routing_key` (`.` -> `/`)."""
    return routing_key.replace(".", "/")


def ingest_queues() -> list[tuple[str, str]]:
    """(queue name, binding key) of every device-to-platform topic kind."""
    return [(f"{INGEST_QUEUE_PREFIX}{kind.name}", binding_key(kind.pattern)) for kind in CONSUMED]


def _dup(message: DeliveredMessage) -> bool:
    if message.redelivered:
        return True
    headers = message.header.properties.headers
    return headers is not None and headers.get(MQTT_DUP_HEADER) is True


@dataclass(slots=True, eq=False)
class AmqpDelivery:
    """One message from an ingest queue and the source that acknowledges it."""

    source: AmqpSource
    tag: int  # its delivery tag on the source's channel
    topic: str
    payload: bytes
    dup: bool
    # Quorum queues number nothing: the key is the topic and payload (`origin`).
    mid: int = 0
    retain: bool = False  # RabbitMQ replays retained messages to MQTT subscribers only

    @property
    def origin(self) -> str:
        return f"amqp|{self.topic}"

    def ack(self) -> None:
        self.source.ack(self.tag)


class AmqpSource:
    """One AMQP connection consuming every ingest queue; the worker's `DeliverySource`.

    `async with AmqpSource(...) as source:` connects, declares and binds the queues and
    starts consuming; `async for batch in source.batches():` until AmqpSourceError.
    """

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        name: str = "ingest",
        prefetch: int = 500,
        timeout: float = 10.0,
        read_pause: float = 0.0,
    ) -> None:
        parsed = URL(url)
        if not parsed.user and username:
            parsed = parsed.with_user(username).with_password(password)
        self._url = parsed
        self._name = name
        self._prefetch = prefetch
        self._timeout = timeout
        self._read_pause = read_pause
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        # aiormq's channel under it: deliveries consumed and acknowledged there without
        # aio-pika's per-message wrapper and task (a third of the worker's CPU).
        self._underlay: aiormq.abc.AbstractChannel | None = None
        self._publish_channel: AbstractChannel | None = None
        self._inbox: list[Delivery] = []
        self._arrived = asyncio.Event()
        self._lost: AmqpSourceError | None = None
        self._acks: list[int] = []
        self._acker: asyncio.Task[None] | None = None

    @property
    def description(self) -> str:
        return f"AMQP {self._url.host}:{self._url.port}{self._url.path}"

    async def __aenter__(self) -> Self:
        try:
            async with asyncio.timeout(self._timeout):
                self._connection = await aio_pika.connect(
                    self._url, client_properties={"connection_name": self._name}
                )
                self._connection.close_callbacks.add(self._on_close)
                channel = await self._connection.channel(publisher_confirms=False)
                channel.close_callbacks.add(self._on_close)
                self._channel = channel
                # Per consumer (queue): what one worker holds unacknowledged.
                await channel.set_qos(prefetch_count=self._prefetch)
                self._underlay = await channel.get_underlay_channel()
                for name, key in ingest_queues():
                    queue = await channel.declare_queue(name, durable=True, arguments=QUORUM)
                    await queue.bind(EXCHANGE, key)
                    await self._underlay.basic_consume(name, self._on_message, no_ack=False)
        except AMQP_ERRORS as err:
            await self._close()
            raise AmqpSourceError(
                f"cannot consume from {self.description}: {str(err) or type(err).__name__}"
            ) from err
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._acks and self._lost is None:
            # Leaving while connected (the worker stops): what was stored is
            # acknowledged now, not delivered again to the next worker.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self._send_acks()
        await self._close()

    async def _close(self) -> None:
        self._lost = self._lost or AmqpSourceError("closed")
        self._arrived.set()
        if self._acker is not None:
            self._acker.cancel()
            self._acker = None
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed:
            try:
                async with asyncio.timeout(2):
                    await connection.close()
            except (*AMQP_ERRORS, RuntimeError) as err:
                logger.debug("AMQP connection not closed cleanly: %s", err)

    def _on_close(self, _sender: object, exc: BaseException | None = None) -> None:
        if self._lost is None:
            detail = str(exc) if exc else "closed by the broker"
            self._lost = AmqpSourceError(f"{self.description}: {detail}")
        self._arrived.set()

    async def _on_message(self, message: DeliveredMessage) -> None:
        tag = message.delivery_tag
        if tag is None:
            return
        topic = mqtt_topic(message.routing_key or "")
        self._inbox.append(AmqpDelivery(self, tag, topic, message.body, _dup(message)))
        self._arrived.set()

    async def batches(self) -> AsyncIterator[Sequence[Delivery]]:
        """What arrived, a batch per wakeup (after READ_PAUSE for company), in order."""
        while True:
            if self._lost is not None:
                raise self._lost
            if not self._inbox:
                self._arrived.clear()
                await self._arrived.wait()
                if self._read_pause and self._lost is None:
                    await asyncio.sleep(self._read_pause)
                continue
            batch, self._inbox = self._inbox, []
            yield batch

    def ack(self, tag: int) -> None:
        """Acknowledge delivery `tag` on the next turn (on a lost connection: never)."""
        if self._lost is not None:
            return
        self._acks.append(tag)
        if self._acker is None or self._acker.done():
            self._acker = asyncio.create_task(self._send_acks(), name="amqp-acks")

    async def _send_acks(self) -> None:
        underlay = self._underlay
        while self._acks and self._lost is None and underlay is not None:
            acks, self._acks = self._acks, []
            try:
                for tag in acks:
                    # Queued for the connection's writer, not awaited one by one.
                    await underlay.basic_ack(tag, wait=False)
            except AMQP_ERRORS as err:
                # The channel is gone: RabbitMQ delivers these again.
                logger.warning("acknowledgements not sent (%s)", err)
                return

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish to a device's topic through `amq.topic` and wait for RabbitMQ's confirm.

        `retain` cannot be honoured (AMQP has no retained store): the device gets it if
        connected. PublishRefused when RabbitMQ refuses it (the topic check)."""
        del qos, retain
        exchange = await self._publisher()
        message = aio_pika.Message(payload, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        try:
            async with asyncio.timeout(self._timeout):
                await exchange.publish(message, routing_key=topic.replace("/", "."))
        except aiormq.exceptions.ChannelAccessRefused as err:
            self._publish_channel = None
            raise PublishRefused(f"{topic}: {err}") from err
        except AMQP_ERRORS as err:
            self._publish_channel = None
            raise AmqpSourceError(f"publish to {topic} failed: {err}") from err

    async def _publisher(self) -> AbstractExchange:
        # A channel of its own: a refused publish closes its channel, never the consumers'.
        if self._connection is None or self._lost is not None:
            raise AmqpSourceError("not connected")
        channel = self._publish_channel
        if channel is None or channel.is_closed:
            channel = await self._connection.channel(publisher_confirms=True)
            self._publish_channel = channel
        return await channel.get_exchange(EXCHANGE, ensure=False)
