"""MQTT 5 on the wire: the packets the ingest worker sends, and an incremental decoder.

Only what a QoS 1 subscriber needs (OASIS MQTT 5.0, sections 2 and 3): CONNECT,
SUBSCRIBE, PUBACK, PINGREQ and DISCONNECT out; CONNACK, PUBLISH, SUBACK,
PINGRESP and DISCONNECT in; and the worker's few QoS 1 publishes (PUBLISH out,
PUBACK in: answers to devices' twin/get). The decoder takes the bytes of each socket read,
however the stream was cut, and returns every complete packet in them; PUBLISH,
the hot path, is decoded inline into a `Publish`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Final

CONNECT: Final = 1
CONNACK: Final = 2
PUBLISH: Final = 3
PUBACK: Final = 4
PUBREC: Final = 5
PUBREL: Final = 6
PUBCOMP: Final = 7
SUBSCRIBE: Final = 8
SUBACK: Final = 9
UNSUBSCRIBE: Final = 10
UNSUBACK: Final = 11
PINGREQ: Final = 12
PINGRESP: Final = 13
DISCONNECT: Final = 14
AUTH: Final = 15

MAX_REMAINING_LENGTH: Final = 268_435_455  # four varint bytes

PINGREQ_PACKET: Final = b"\xc0\x00"
DISCONNECT_PACKET: Final = b"\xe0\x00"  # reason 0 (normal): the session is kept

# Property identifiers (MQTT 5.0, 2.2.2.2) and how each is encoded.
SESSION_EXPIRY_INTERVAL: Final = 0x11
ASSIGNED_CLIENT_IDENTIFIER: Final = 0x12
SERVER_KEEP_ALIVE: Final = 0x13
REASON_STRING: Final = 0x1F
RECEIVE_MAXIMUM: Final = 0x21
MAXIMUM_QOS: Final = 0x24
USER_PROPERTY: Final = 0x26
SHARED_SUBSCRIPTION_AVAILABLE: Final = 0x2A

_BYTE, _TWO, _FOUR, _VARINT, _STRING, _BINARY, _PAIR = range(7)
_PROPERTY_TYPES: Final = {
    0x01: _BYTE, 0x02: _FOUR, 0x03: _STRING, 0x08: _STRING, 0x09: _BINARY, 0x0B: _VARINT,
    0x11: _FOUR, 0x12: _STRING, 0x13: _TWO, 0x15: _STRING, 0x16: _BINARY, 0x17: _BYTE,
    0x18: _FOUR, 0x19: _BYTE, 0x1A: _STRING, 0x1C: _STRING, 0x1F: _STRING, 0x21: _TWO,
    0x22: _TWO, 0x23: _TWO, 0x24: _BYTE, 0x25: _BYTE, 0x26: _PAIR, 0x27: _FOUR,
    0x28: _BYTE, 0x29: _BYTE, 0x2A: _BYTE,
}  # fmt: skip


class MalformedPacket(ValueError):
    """The peer sent bytes that are not a valid MQTT 5 packet."""


@dataclass(slots=True)
class Publish:
    """One received PUBLISH."""

    topic: str
    payload: bytes
    qos: int
    mid: int  # the packet identifier (0 for QoS 0)
    retain: bool
    dup: bool


@dataclass(frozen=True, slots=True)
class Control:
    """Any other packet: its type, the flags of its first byte, and its body."""

    kind: int
    flags: int
    body: bytes


@dataclass(frozen=True, slots=True)
class ConnAck:
    session_present: bool
    reason_code: int
    properties: dict[int, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SubAck:
    packet_id: int
    reason_codes: tuple[int, ...]
    properties: dict[int, Any] = field(default_factory=dict)


def encode_varint(value: int) -> bytes:
    """A Variable Byte Integer (1 to 4 bytes, 7 bits each, least significant first)."""
    if not 0 <= value <= MAX_REMAINING_LENGTH:
        raise ValueError(f"not encodable as a variable byte integer: {value}")
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


def decode_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The integer at `data[pos:]` and the position after it; IndexError when cut short."""
    value = 0
    for shift in (0, 7, 14, 21):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
    raise MalformedPacket("variable byte integer longer than four bytes")


def _string(text: str) -> bytes:
    raw = text.encode()
    return _binary(raw)


def _binary(raw: bytes) -> bytes:
    if len(raw) > 0xFFFF:
        raise ValueError("string or binary field longer than 65,535 bytes")
    return struct.pack(">H", len(raw)) + raw


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes((first_byte,)) + encode_varint(len(body)) + body


def encode_connect(
    *,
    client_id: str,
    username: str | None,
    password: str | None,
    clean_start: bool,
    keepalive: int,
    session_expiry: int,
    receive_maximum: int,
) -> bytes:
    """CONNECT: MQTT 5, no will; the session outlives the connection by `session_expiry` s."""
    if not 1 <= receive_maximum <= 0xFFFF:
        raise ValueError("receive_maximum must be within 1..65535")
    flags = (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    flags |= 0x02 if clean_start else 0
    properties = struct.pack(
        ">BIBH", SESSION_EXPIRY_INTERVAL, session_expiry, RECEIVE_MAXIMUM, receive_maximum
    )
    body = [
        _string("MQTT"),
        struct.pack(">BBH", 5, flags, keepalive),
        encode_varint(len(properties)),
        properties,
        _string(client_id),
    ]
    if username is not None:
        body.append(_string(username))
    if password is not None:
        body.append(_binary(password.encode()))
    return _packet(CONNECT << 4, b"".join(body))


def encode_subscribe(packet_id: int, filters: list[tuple[str, int]]) -> bytes:
    """SUBSCRIBE: each filter with its maximum QoS (No Local off, as $share requires)."""
    body = [struct.pack(">HB", packet_id, 0)]  # no properties
    for topic_filter, qos in filters:
        body.append(_string(topic_filter) + bytes((qos & 0x03,)))
    return _packet(SUBSCRIBE << 4 | 0x02, b"".join(body))


def encode_publish(
    topic: str, payload: bytes, *, packet_id: int, qos: int = 1, retain: bool = False
) -> bytes:
    """PUBLISH, QoS 0 or 1, without properties."""
    if qos not in (0, 1):
        raise ValueError("only QoS 0 and 1 are sent")
    header = _string(topic) + (struct.pack(">H", packet_id) if qos else b"") + b"\x00"
    return _packet(PUBLISH << 4 | qos << 1 | int(retain), header + payload)


def decode_puback(body: bytes) -> tuple[int, int]:
    """A PUBACK's packet identifier and reason code (0, success, when left out)."""

    def decode(data: bytes) -> tuple[int, int]:
        if len(data) < 2:
            raise IndexError("PUBACK without a packet identifier")
        return int.from_bytes(data[0:2]), data[2] if len(data) > 2 else 0

    return _checked(decode, body)  # type: ignore[no-any-return]


_PUBACK: Final = struct.Struct(">BBH")


def encode_pubacks(mids: list[int]) -> bytes:
    """PUBACK (reason: success) for every packet identifier, as one write."""
    pack = _PUBACK.pack
    return b"".join([pack(0x40, 2, mid) for mid in mids])


def decode_properties(data: bytes, pos: int, end: int) -> dict[int, Any]:
    """The property block at `data[pos:end]` (its length first); user properties as a list."""
    length, pos = decode_varint(data, pos)
    stop = pos + length
    if stop > end:
        raise MalformedPacket("properties longer than the packet")
    properties: dict[int, Any] = {}
    while pos < stop:
        identifier, pos = decode_varint(data, pos)
        kind = _PROPERTY_TYPES.get(identifier)
        value: Any
        if kind is None:
            raise MalformedPacket(f"unknown property 0x{identifier:02x}")
        if kind == _BYTE:
            value, pos = data[pos], pos + 1
        elif kind == _TWO:
            value, pos = int.from_bytes(data[pos : pos + 2]), pos + 2
        elif kind == _FOUR:
            value, pos = int.from_bytes(data[pos : pos + 4]), pos + 4
        elif kind == _VARINT:
            value, pos = decode_varint(data, pos)
        elif kind == _PAIR:
            name, pos = _decode_string(data, pos)
            text, pos = _decode_string(data, pos)
            properties.setdefault(identifier, []).append((name, text))
            continue
        else:
            size = int.from_bytes(data[pos : pos + 2])
            raw, pos = data[pos + 2 : pos + 2 + size], pos + 2 + size
            value = raw.decode() if kind == _STRING else raw
        properties[identifier] = value
    if pos != stop:
        raise MalformedPacket("a property runs past its block")
    return properties


def _decode_string(data: bytes, pos: int) -> tuple[str, int]:
    size = int.from_bytes(data[pos : pos + 2])
    return data[pos + 2 : pos + 2 + size].decode(), pos + 2 + size


def _checked(decode: Any, body: bytes) -> Any:
    try:
        return decode(body)
    except (IndexError, UnicodeDecodeError) as err:
        raise MalformedPacket(f"truncated or invalid packet: {err}") from err


def decode_connack(body: bytes) -> ConnAck:
    """CONNACK: session present, reason code (>= 0x80: refused), properties."""

    def decode(data: bytes) -> ConnAck:
        properties = decode_properties(data, 2, len(data)) if len(data) > 2 else {}
        return ConnAck(bool(data[0] & 0x01), data[1], properties)

    result: ConnAck = _checked(decode, body)
    return result


def decode_suback(body: bytes) -> SubAck:
    """SUBACK: the packet identifier and one reason code per filter (>= 0x80: refused)."""

    def decode(data: bytes) -> SubAck:
        packet_id = int.from_bytes(data[0:2])
        length, pos = decode_varint(data, 2)
        properties = decode_properties(data, 2, len(data))
        return SubAck(packet_id, tuple(data[pos + length :]), properties)

    result: SubAck = _checked(decode, body)
    return result


def decode_disconnect(body: bytes) -> tuple[int, dict[int, Any]]:
    """DISCONNECT from the server: its reason code and properties."""
    if not body:
        return 0, {}

    def decode(data: bytes) -> tuple[int, dict[int, Any]]:
        properties = decode_properties(data, 1, len(data)) if len(data) > 1 else {}
        return data[0], properties

    result: tuple[int, dict[int, Any]] = _checked(decode, body)
    return result


class Decoder:
    """Cuts a byte stream into packets, whatever the boundaries of the reads."""

    def __init__(self, *, max_packet_size: int = MAX_REMAINING_LENGTH + 5) -> None:
        self._partial = bytearray()
        self._wanted = 0  # bytes the partial packet needs before it is worth decoding
        self._max_packet_size = max_packet_size

    def feed(self, data: bytes) -> list[Publish | Control]:
        """Every packet completed by `data`, in order; MalformedPacket on a protocol error."""
        if self._partial:
            self._partial += data
            if len(self._partial) < self._wanted:
                return []
            data = bytes(self._partial)
            self._partial.clear()
        packets: list[Publish | Control] = []
        pos = self._decode(data, packets)
        if pos < len(data):
            self._partial += memoryview(data)[pos:]
        return packets

    def _decode(self, data: bytes, packets: list[Publish | Control]) -> int:
        """Decode complete packets from the start of `data`; return where the rest begins."""
        end = len(data)
        pos = 0
        append = packets.append
        while pos < end:
            start = pos
            first = data[pos]
            try:
                length, pos = decode_varint(data, pos + 1)
            except IndexError:
                self._wanted = end - start + 1  # the header is cut: any byte may finish it
                return start
            stop = pos + length
            if stop - start > self._max_packet_size:
                raise MalformedPacket(f"packet of {stop - start} bytes exceeds the maximum")
            if stop > end:
                self._wanted = stop - start
                return start
            if first >> 4 == PUBLISH:
                append(_decode_publish(data, first, pos, stop))
            else:
                append(Control(first >> 4, first & 0x0F, data[pos:stop]))
            pos = stop
        self._wanted = 0
        return pos


def _decode_publish(data: bytes, first: int, pos: int, stop: int) -> Publish:
    """PUBLISH at `data[pos:stop]` (after the fixed header)."""
    qos = (first >> 1) & 0x03
    try:
        size = data[pos] << 8 | data[pos + 1]
        pos += 2
        topic = data[pos : pos + size].decode()
        pos += size
        if qos:
            if qos == 3:
                raise MalformedPacket("PUBLISH with QoS 3")
            mid = data[pos] << 8 | data[pos + 1]
            pos += 2
        else:
            mid = 0
        properties = data[pos]
        if properties < 0x80:
            pos += 1 + properties
        else:
            length, pos = decode_varint(data, pos)
            pos += length
    except (IndexError, UnicodeDecodeError) as err:
        raise MalformedPacket(f"invalid PUBLISH: {err}") from err
    if pos > stop or not topic:
        # An empty topic would need a Topic Alias, which this client never allows.
        raise MalformedPacket("invalid PUBLISH: fields run past the packet, or no topic")
    return Publish(topic, data[pos:stop], qos, mid, bool(first & 0x01), bool(first & 0x08))
