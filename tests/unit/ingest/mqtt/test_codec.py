"""The worker's MQTT 5 codec: packets cut anywhere, varints, properties, malformed input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.mqtt.codec import (
    ASSIGNED_CLIENT_IDENTIFIER,
    MAX_REMAINING_LENGTH,
    REASON_STRING,
    SERVER_KEEP_ALIVE,
    USER_PROPERTY,
    Control,
    Decoder,
    MalformedPacket,
    Publish,
    decode_connack,
    decode_disconnect,
    decode_puback,
    decode_suback,
    decode_varint,
    encode_connect,
    encode_pubacks,
    encode_publish,
    encode_subscribe,
    encode_varint,
)


def publish_packet(
    topic: str,
    payload: bytes,
    *,
    qos: int = 1,
    mid: int = 1,
    properties: bytes = b"",
    retain: bool = False,
    dup: bool = False,
) -> bytes:
    """A PUBLISH as a broker would send it."""
    raw = topic.encode()
    body = struct.pack(">H", len(raw)) + raw
    if qos:
        body += struct.pack(">H", mid)
    body += encode_varint(len(properties)) + properties + payload
    first = 0x30 | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    return bytes((first,)) + encode_varint(len(body)) + body


def string_property(identifier: int, text: str) -> bytes:
    raw = text.encode()
    return bytes((identifier,)) + struct.pack(">H", len(raw)) + raw


STREAM = [
    publish_packet("devices/a/telemetry", b'{"t": 1}', mid=1),
    # Properties a broker may add: payload format, message expiry, user property.
    publish_packet(
        "devices/b/telemetry",
        b"x" * 300,  # a remaining length of two varint bytes
        mid=65535,
        properties=b"\x01\x01" + b"\x02\x00\x00\x00\x3c" + b"\x26\x00\x01k\x00\x01v",
        dup=True,
    ),
    b"\xd0\x00",  # PINGRESP
    publish_packet("devices/c/status", b"online", qos=0, retain=True),
    publish_packet("devices/d/telemetry", b"y" * 20_000, mid=7),  # three varint bytes
]
WIRE = b"".join(STREAM)


def check_stream(packets: list[Publish | Control]) -> None:
    assert len(packets) == 5
    first, second, ping, third, fourth = packets
    assert first == Publish("devices/a/telemetry", b'{"t": 1}', 1, 1, False, False)
    assert second == Publish("devices/b/telemetry", b"x" * 300, 1, 65535, False, True)
    assert ping == Control(13, 0, b"")
    assert third == Publish("devices/c/status", b"online", 0, 0, True, False)
    assert fourth == Publish("devices/d/telemetry", b"y" * 20_000, 1, 7, False, False)


def test_decode_several_packets_in_one_chunk() -> None:
    check_stream(Decoder().feed(WIRE))


def test_decode_stream_cut_at_every_byte_boundary() -> None:
    for cut in range(1, len(WIRE)):
        decoder = Decoder()
        packets = decoder.feed(WIRE[:cut]) + decoder.feed(WIRE[cut:])
        check_stream(packets)


def test_decode_stream_one_byte_at_a_time() -> None:
    decoder = Decoder()
    packets: list[Publish | Control] = []
    for index in range(len(WIRE)):
        packets += decoder.feed(WIRE[index : index + 1])
    check_stream(packets)


@given(st.lists(st.integers(min_value=1, max_value=len(WIRE)), max_size=40))
def test_decode_stream_cut_anywhere(cuts: list[int]) -> None:
    decoder = Decoder()
    packets: list[Publish | Control] = []
    start = 0
    for cut in sorted(set(cuts)):
        packets += decoder.feed(WIRE[start:cut])
        start = cut
    packets += decoder.feed(WIRE[start:])
    check_stream(packets)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16_383, b"\xff\x7f"),
        (16_384, b"\x80\x80\x01"),
        (2_097_151, b"\xff\xff\x7f"),
        (2_097_152, b"\x80\x80\x80\x01"),
        (MAX_REMAINING_LENGTH, b"\xff\xff\xff\x7f"),
    ],
)
def test_encode_decode_varint_boundaries(value: int, encoded: bytes) -> None:
    assert encode_varint(value) == encoded
    assert decode_varint(encoded + b"rest", 0) == (value, len(encoded))


def test_decode_varint_five_bytes_malformed() -> None:
    with pytest.raises(MalformedPacket):
        decode_varint(b"\xff\xff\xff\xff\x01", 0)
    with pytest.raises(MalformedPacket):
        Decoder().feed(b"\x30\xff\xff\xff\xff\x01")


def test_encode_varint_out_of_range_refused() -> None:
    with pytest.raises(ValueError, match="variable byte integer"):
        encode_varint(MAX_REMAINING_LENGTH + 1)


@pytest.mark.parametrize(
    "wire",
    [
        b"\x32\x03\x00\x05a",  # the topic runs past the packet
        b"\x32\x04\x00\x01a\x00",  # QoS 1 without a whole packet identifier
        b"\x36\x06\x00\x01a\x00\x01\x00",  # QoS 3
        b"\x30\x04\x00\x02\xff\xfe",  # a topic that is not UTF-8
        b"\x30\x03\x00\x00\x00",  # no topic (a topic alias this client never allows)
        b"\x32\x07\x00\x01a\x00\x01\x05\x01",  # properties longer than the packet
    ],
)
def test_decode_malformed_publish_refused(wire: bytes) -> None:
    with pytest.raises(MalformedPacket):
        Decoder().feed(wire)


def test_decode_packet_over_maximum_refused() -> None:
    decoder = Decoder(max_packet_size=100)
    with pytest.raises(MalformedPacket, match="exceeds"):
        decoder.feed(publish_packet("t", b"x" * 200)[:10])


def test_encode_connect_persistent_session_fields() -> None:
    packet = encode_connect(
        client_id="ingest-1",
        username="iot-ingest",
        password="secret",
        clean_start=False,
        keepalive=30,
        session_expiry=86_400,
        receive_maximum=1000,
    )
    [connect] = Decoder().feed(packet)
    assert isinstance(connect, Control)
    assert connect.kind == 1
    body = connect.body
    assert body[:7] == b"\x00\x04MQTT\x05"
    assert body[7] == 0x80 | 0x40  # user name and password, clean start off
    assert body[8:10] == b"\x00\x1e"
    # Properties: session expiry (0x11) and Receive Maximum (0x21).
    assert body[10:19] == b"\x08\x11\x00\x01\x51\x80\x21\x03\xe8"
    assert body[19:] == b"\x00\x08ingest-1\x00\x0aiot-ingest\x00\x06secret"
    with_clean_start = encode_connect(
        client_id="c",
        username=None,
        password=None,
        clean_start=True,
        keepalive=0,
        session_expiry=0,
        receive_maximum=1,
    )
    assert with_clean_start[2 + 7] == 0x02


def test_encode_connect_receive_maximum_bounds() -> None:
    for bad in (0, 65_536):
        with pytest.raises(ValueError, match="receive_maximum"):
            encode_connect(
                client_id="c",
                username=None,
                password=None,
                clean_start=False,
                keepalive=30,
                session_expiry=0,
                receive_maximum=bad,
            )


def test_encode_subscribe_filters_with_qos() -> None:
    packet = encode_subscribe(9, [("$share/g/devices/+/telemetry", 1), ("devices/+/status", 1)])
    [subscribe] = Decoder().feed(packet)
    assert isinstance(subscribe, Control)
    assert (subscribe.kind, subscribe.flags) == (8, 0x02)
    assert subscribe.body == (
        b"\x00\x09\x00"
        + b"\x00\x1c$share/g/devices/+/telemetry\x01"
        + b"\x00\x10devices/+/status\x01"
    )


def test_encode_pubacks_one_write() -> None:
    assert encode_pubacks([1, 258, 65535]) == b"\x40\x02\x00\x01\x40\x02\x01\x02\x40\x02\xff\xff"
    assert encode_pubacks([]) == b""


def test_encode_publish_as_a_broker_reads_it() -> None:
    # The same bytes as a broker's PUBLISH without properties: the decoder reads them back.
    wire = encode_publish("devices/a/twin/desired", b'{"v":1}', packet_id=258, retain=True)
    assert wire == publish_packet("devices/a/twin/desired", b'{"v":1}', mid=258, retain=True)
    assert Decoder().feed(wire) == [
        Publish("devices/a/twin/desired", b'{"v":1}', 1, 258, True, False)
    ]
    at_most_once = encode_publish("t", b"", packet_id=9, qos=0)
    assert at_most_once == publish_packet("t", b"", qos=0)
    with pytest.raises(ValueError, match="QoS"):
        encode_publish("t", b"", packet_id=1, qos=2)


def test_decode_puback_reason_codes() -> None:
    assert decode_puback(b"\x01\x02") == (258, 0)  # MQTT 5: success may leave it out
    assert decode_puback(b"\x00\x07\x87\x00") == (7, 0x87)  # not authorized
    with pytest.raises(MalformedPacket):
        decode_puback(b"\x01")


def test_decode_connack_properties() -> None:
    properties = (
        b"\x13\x00\x3c"  # server keep alive 60
        + string_property(ASSIGNED_CLIENT_IDENTIFIER, "auto-1")
        + b"\x26\x00\x01a\x00\x01b\x26\x00\x01a\x00\x01c"  # user property, twice
        + b"\x21\x00\x0a"  # receive maximum
    )
    connack = decode_connack(b"\x01\x00" + encode_varint(len(properties)) + properties)
    assert connack.session_present
    assert connack.reason_code == 0
    assert connack.properties[SERVER_KEEP_ALIVE] == 60
    assert connack.properties[ASSIGNED_CLIENT_IDENTIFIER] == "auto-1"
    assert connack.properties[USER_PROPERTY] == [("a", "b"), ("a", "c")]
    refused = decode_connack(b"\x00\x86\x00")
    assert (refused.session_present, refused.reason_code) == (False, 0x86)


def test_decode_connack_malformed() -> None:
    with pytest.raises(MalformedPacket):
        decode_connack(b"\x00")
    with pytest.raises(MalformedPacket):
        decode_connack(b"\x00\x00\x03\x7f\x00\x00")  # an unknown property


def test_decode_suback_reason_codes() -> None:
    reason = string_property(REASON_STRING, "no")
    suback = decode_suback(b"\x00\x09" + encode_varint(len(reason)) + reason + b"\x01\x87")
    assert suback.packet_id == 9
    assert suback.reason_codes == (0x01, 0x87)
    assert suback.properties == {REASON_STRING: "no"}


def test_decode_disconnect_reason() -> None:
    assert decode_disconnect(b"") == (0, {})
    reason = string_property(REASON_STRING, "taken over")
    assert decode_disconnect(b"\x8e" + encode_varint(len(reason)) + reason) == (
        0x8E,
        {REASON_STRING: "taken over"},
    )
