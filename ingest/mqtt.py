"""aiomqtt with acknowledgement after storage.

aiomqtt 2.5 lets paho acknowledge a QoS 1 message as soon as it is queued. paho 2
can instead leave it to the application (`manual_ack_set(True)` and `ack(mid,
qos)`); aiomqtt keeps its paho client as `_client`, so this subclass turns that
on and reports each message's DUP flag, which aiomqtt's Message drops. We stay on
the stable aiomqtt 2.5 (pinned <2.6) rather than the 3.0 alpha; the ingest tests
(a worker killed mid-stream loses nothing) guard this reliance on paho.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


@dataclass(frozen=True, slots=True, eq=False)
class Delivery:
    """One received message and the connection that must acknowledge it."""

    client: AckingClient
    topic: str
    payload: bytes
    qos: int
    mid: int
    retain: bool
    dup: bool

    def ack(self) -> None:
        """Tell the broker it may forget this message (no-op for QoS 0).

        After a reconnect the old connection's client is dead: the ack is not sent,
        and the broker redelivers the message (marked DUP) on the new connection.
        """
        if self.qos > 0 and self.client.is_current:
            self.client._client.ack(self.mid, self.qos)


class AckingClient(aiomqtt.Client):
    """An aiomqtt client that acknowledges QoS 1 messages only when told to."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client.manual_ack_set(True)
        self.is_current = True

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        # Replaces aiomqtt's Message (no DUP flag) by our Delivery; the queue is
        # unbounded here because the broker bounds it: Receive Maximum.
        self._queue.put_nowait(
            Delivery(  # type: ignore[arg-type]
                client=self,
                topic=message.topic,
                payload=bytes(message.payload),
                qos=message.qos,
                mid=message.mid,
                retain=bool(message.retain),
                dup=bool(message.dup),
            )
        )


def connect_properties(*, receive_maximum: int, session_expiry: int) -> Properties:
    """MQTT 5 CONNECT: keep the session while away, and at most N messages unacked."""
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = session_expiry
    properties.ReceiveMaximum = receive_maximum
    return properties
