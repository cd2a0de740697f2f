"""aiomqtt with acknowledgement after storage.

aiomqtt 2.5 lets paho acknowledge a QoS 1 message as soon as it is queued. paho 2
can instead leave it to the application (`manual_ack_set(True)` and `ack(mid,
qos)`); aiomqtt keeps its paho client as `_client`, so this subclass turns that
on and reports each message's DUP flag, which aiomqtt's Message drops. We stay on
the stable aiomqtt 2.5 (pinned <2.6) rather than the 3.0 alpha; the ingest tests
(a worker killed mid-stream loses nothing) guard this reliance on paho.
"""

from __future__ import annotations

import socket
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


class BufferedSocket:
    """A plain TCP socket read in 64 KiB gulps.

    paho reads each packet with several tiny recv() calls (the type byte, each
    length byte, the body) and aiomqtt reads one packet per wakeup. Served from
    this buffer, those calls are memory copies, and `pending()` (which aiomqtt
    already honours for TLS sockets) makes it read every buffered packet in one
    wakeup: the per-message cost of a busy worker falls by several syscalls and
    an event-loop turn.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""
        self._position = 0

    def recv(self, size: int) -> bytes:
        if self._position >= len(self._buffer):
            self._buffer = self._sock.recv(65536)  # BlockingIOError passes through
            self._position = 0
            if not self._buffer:
                return b""  # closed by the peer
        chunk = self._buffer[self._position : self._position + size]
        self._position += len(chunk)
        return chunk

    def pending(self) -> int:
        return len(self._buffer) - self._position

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class AckingClient(aiomqtt.Client):
    """An aiomqtt client that acknowledges QoS 1 messages only when told to."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client.manual_ack_set(True)
        self.is_current = True

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        if isinstance(sock, socket.socket) and not hasattr(sock, "pending"):
            sock = BufferedSocket(sock)
            client._sock = sock
        super()._on_socket_open(client, userdata, sock)

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
