"""One MQTT 5 connection of the worker: the asyncio protocol, its deliveries, its errors.

Decodes each socket read (`ingest.mqtt.codec`) into deliveries handed over as one
batch, acknowledges them in one write per event-loop turn, and paces reading under
a dense stream. `ingest.mqtt.MqttSubscriber` drives it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from typing import cast

from ingest.mqtt.codec import (
    CONNACK,
    DISCONNECT,
    DISCONNECT_PACKET,
    PINGRESP,
    PUBACK,
    REASON_STRING,
    SUBACK,
    ConnAck,
    Control,
    Decoder,
    MalformedPacket,
    Publish,
    SubAck,
    decode_connack,
    decode_disconnect,
    decode_puback,
    decode_suback,
    encode_pubacks,
)
from ingest.source import PublishRefused as SourcePublishRefused
from ingest.source import SourceError

logger = logging.getLogger(__name__)

QUICKACK: int = getattr(socket, "TCP_QUICKACK", 0)  # Linux only; 0: not available

# Reason codes worth a word in a log line (MQTT 5.0, 3.2.2.2 and 3.14.2.1).
REASONS = {
    0x80: "unspecified error",
    0x81: "malformed packet",
    0x82: "protocol error",
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
    0x8D: "keep alive timeout",
    0x8E: "session taken over",
    0x8F: "topic filter invalid",
    0x97: "quota exceeded",
    0x9C: "use another server",
    0x9E: "shared subscriptions not supported",
}


class MqttClientError(SourceError):
    """The broker connection failed; the worker reconnects."""


class MqttConnectFailed(MqttClientError):
    """The broker could not be reached, or refused the connection or a subscription."""


class PublishRefused(MqttClientError, SourcePublishRefused):
    """The broker answered a publish with a failure reason (the connection stays up)."""


class MqttConnectionLost(MqttClientError):
    """An established connection ended (closed by the broker, network, protocol error)."""


@dataclass(slots=True, eq=False)
class Delivery:
    """One received message and the connection that must acknowledge it."""

    connection: Connection
    topic: str
    payload: bytes
    qos: int
    mid: int
    retain: bool
    dup: bool

    @property
    def origin(self) -> str | None:
        """The worker's own session numbered `mid` (ingest.source)."""
        return None

    def ack(self) -> None:
        """Tell the broker it may forget this message (no-op for QoS 0).

        After a reconnect the old connection is closed: the ack is not sent, and the
        broker redelivers the message (marked DUP) on the new connection.
        """
        if self.qos:
            self.connection.ack(self.mid)


def describe_reason(code: int) -> str:
    """A reason code as `0x87 not authorized`."""
    return f"0x{code:02x} {REASONS.get(code, '')}".strip()


class Connection(asyncio.Protocol):
    """The protocol object of one TCP connection: decodes, queues, acknowledges."""

    def __init__(self, *, inbox_limit: int, read_pause: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._decoder = Decoder()
        self._transport: asyncio.Transport | None = None
        self._socket: socket.socket | None = None
        self.inbox: list[Delivery] = []
        self._inbox_limit = inbox_limit
        self._full = False  # reading paused: the inbox is full
        self._read_pause = read_pause
        self._resting = False  # reading paused: after a read, for read_pause seconds
        self._last_read = float("-inf")
        self._waiter: asyncio.Future[None] | None = None
        self._acks: list[int] = []
        self.lost: MqttConnectionLost | None = None
        self.connack: asyncio.Future[ConnAck] = self._loop.create_future()
        self.subacks: dict[int, asyncio.Future[SubAck]] = {}
        # The worker's own QoS 1 publishes: packet id -> (its PUBACK's reason code).
        self.pubacks: dict[int, asyncio.Future[int]] = {}
        self.ping_outstanding = False
        self._disconnect_reason: str | None = None
        self.closed: asyncio.Future[None] = self._loop.create_future()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's does not subclass asyncio.Transport).
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        self._socket = sock if QUICKACK and sock is not None else None

    def data_received(self, data: bytes) -> None:
        if self._socket is not None:
            # Mosquitto writes with Nagle on: its next PUBLISH waits until our last
            # read is ACKed, and delayed ACKs (PUBACKs come only after storage) held
            # each message up to 40 ms. Linux resets this mode, hence once per read.
            try:
                self._socket.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
            except OSError:
                self._socket = None
        try:
            packets = self._decoder.feed(data)
        except MalformedPacket as err:
            logger.warning("malformed packet from the broker: %s", err)
            self._abort(f"malformed packet: {err}")
            return
        inbox = self.inbox
        for packet in packets:
            if type(packet) is Publish:
                inbox.append(
                    Delivery(
                        self,
                        packet.topic,
                        packet.payload,
                        packet.qos,
                        packet.mid,
                        packet.retain,
                        packet.dup,
                    )
                )
            else:
                self._control(packet)  # type: ignore[arg-type]
        if inbox:
            transport = self._transport
            if transport is not None and not (self._full or self._resting):
                if len(inbox) >= self._inbox_limit and not (self.subacks or self.pubacks):
                    # Only QoS 0 can outrun the Receive Maximum; let TCP push back.
                    # Not while a SUBACK is awaited: it may sit behind a resumed
                    # session's backlog, and nothing takes from the inbox until it comes.
                    self._full = True
                    transport.pause_reading()
                elif self._read_pause:
                    self._pace(transport)
            self._wake()

    def _pace(self, transport: asyncio.Transport) -> None:
        """Rest after a read when reads come closer together than the pause.

        What arrives meanwhile waits in the socket buffer and is read in one go: one
        wakeup (and one Redis write, one batch) per pause rather than per message. A
        stream sparser than that is read as it comes: resting would only add a wakeup.
        """
        now = self._loop.time()
        dense = now - self._last_read < self._read_pause
        self._last_read = now
        if dense:
            self._resting = True
            transport.pause_reading()
            self._loop.call_later(self._read_pause, self._rested)

    def connection_lost(self, exc: Exception | None) -> None:
        reason = self._disconnect_reason or (str(exc) if exc else "closed by the broker")
        self.lost = MqttConnectionLost(reason)
        if not self.connack.done():
            self.connack.set_exception(self.lost)
        for waiting in (self.subacks, self.pubacks):
            for future in waiting.values():
                if not future.done():
                    future.set_exception(self.lost)
        self._acks.clear()
        if not self.closed.done():
            self.closed.set_result(None)
        self._wake()

    # What the subscriber uses

    def send(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def ack(self, mid: int) -> None:
        """Queue a PUBACK; every PUBACK queued in one event-loop turn goes in one write."""
        if self.lost is not None:
            return
        self._acks.append(mid)
        if len(self._acks) == 1:
            self._loop.call_soon(self._flush_acks)

    def _flush_acks(self) -> None:
        mids, self._acks = self._acks, []
        if mids:
            self.send(encode_pubacks(mids))

    def _rested(self) -> None:
        self._resting = False
        self._last_read = self._loop.time()  # data waiting now counts as dense
        self._resume()

    def _resume(self) -> None:
        transport = self._transport
        if not (self._full or self._resting or transport is None or transport.is_closing()):
            transport.resume_reading()

    def expect_suback(self, packet_id: int, future: asyncio.Future[SubAck]) -> None:
        """Wait for this SUBACK, reading on even if the inbox is full (see data_received)."""
        self.subacks[packet_id] = future
        if self._full:
            self._full = False
            self._resume()

    def expect_puback(self, packet_id: int, future: asyncio.Future[int]) -> None:
        """Wait for this PUBACK, reading on even if the inbox is full (as for a SUBACK)."""
        self.pubacks[packet_id] = future
        if self._full:
            self._full = False
            self._resume()

    def take(self) -> list[Delivery]:
        """Everything received so far (possibly nothing)."""
        batch, self.inbox = self.inbox, []
        if self._full:
            self._full = False
            self._resume()
        return batch

    async def wait(self) -> None:
        """Until something is received or the connection is lost."""
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    async def disconnect(self, *, grace: float) -> None:
        """DISCONNECT, after every queued PUBACK, and wait for the broker to hang up.

        Closing at once could lose PUBACKs: a socket closed with unread data in its
        receive buffer sends a reset, and the broker drops what it has not read yet
        (seen on a loaded machine: a stored message redelivered as a DUP). Half-closed
        instead, the broker reads everything, DISCONNECT last, and closes its side.
        """
        transport = self._transport
        if transport is None or transport.is_closing() or self.lost is not None:
            return
        self._flush_acks()
        transport.write(DISCONNECT_PACKET)
        self._full = self._resting = False
        transport.resume_reading()  # read to the end: nothing left unread
        if transport.can_write_eof():
            transport.write_eof()
        try:
            async with asyncio.timeout(grace):
                await asyncio.shield(self.closed)
        except TimeoutError:
            logger.debug("the broker did not close the connection after DISCONNECT")

    def _abort(self, reason: str) -> None:
        self._disconnect_reason = reason
        if self._transport is not None:
            self._transport.abort()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _control(self, packet: Control) -> None:
        try:
            if packet.kind == PINGRESP:
                self.ping_outstanding = False
            elif packet.kind == CONNACK:
                if not self.connack.done():
                    self.connack.set_result(decode_connack(packet.body))
            elif packet.kind == SUBACK:
                suback = decode_suback(packet.body)
                future = self.subacks.pop(suback.packet_id, None)
                if future is not None and not future.done():
                    future.set_result(suback)
            elif packet.kind == PUBACK:
                packet_id, reason = decode_puback(packet.body)
                waiting = self.pubacks.pop(packet_id, None)
                if waiting is not None and not waiting.done():
                    waiting.set_result(reason)
            elif packet.kind == DISCONNECT:
                code, properties = decode_disconnect(packet.body)
                detail = properties.get(REASON_STRING)
                self._disconnect_reason = f"disconnected by the broker: {describe_reason(code)}" + (
                    f" ({detail})" if detail else ""
                )
                logger.warning("%s", self._disconnect_reason)
            else:
                # QoS 2 flows, UNSUBACK, AUTH: nothing this subscriber asked for.
                self._abort(f"unexpected packet type {packet.kind}")
        except MalformedPacket as err:
            self._abort(f"malformed packet: {err}")
