"""Where the worker's deliveries come from: the interface both transports implement.

`IngestWorker` (ingest/worker.py) drives one `DeliverySource` per connection: it
enters it (connect, subscribe or declare), reads `batches()` until the source is lost
(`SourceError`), then makes a new one after a backoff. Two implement it:

- `ingest.mqtt.MqttSubscriber`: an MQTT 5 session on Mosquitto (shared subscriptions);
- `ingest.amqp.AmqpSource`: RabbitMQ quorum queues bound to `amq.topic` (competing
  consumers).

Every delivery is acknowledged (`Delivery.ack()`) only once handled or stored, or
deliberately dropped; a delivery never acknowledged is delivered again, to this
worker or another, after its connection ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Protocol, Self


class SourceError(Exception):
    """The source's connection failed or ended; the worker makes a new one."""


class PublishRefused(SourceError):
    """The broker refused one of the worker's publishes (the connection may stay up)."""


class Delivery(Protocol):
    """One received device message and its acknowledgement."""

    @property
    def topic(self) -> str:
        """The MQTT topic the device published to (`devices/{id}/...`)."""
        ...

    @property
    def payload(self) -> bytes: ...

    @property
    def mid(self) -> int:
        """An id of the message in the source (part of its dedup key: ingest.store)."""
        ...

    @property
    def retain(self) -> bool:
        """Replayed by the broker from its retained store (old news)."""
        ...

    @property
    def dup(self) -> bool:
        """May have been delivered, and stored, before (a redelivery or a resend)."""
        ...

    @property
    def origin(self) -> str | None:
        """Who numbered `mid`: None for the worker's own session (MQTT: its client id
        makes the dedup key); a name shared by every worker of a queue otherwise."""
        ...

    def ack(self) -> None:
        """The message is handled: the source may forget it (never blocks)."""
        ...


class DeliverySource(Protocol):
    """One connection's worth of deliveries; `async with` connects and subscribes."""

    @property
    def description(self) -> str:
        """Where it connects, for log lines (no secrets)."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def batches(self) -> AsyncIterator[Sequence[Delivery]]:
        """The deliveries received, a batch per wakeup; raises SourceError when lost."""
        ...

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        """Send a message to a device topic (the worker answers twin/get)."""
        ...
