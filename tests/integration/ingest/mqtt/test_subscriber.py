"""The worker's own MQTT 5 client against the real Mosquitto (dynamic security on)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiomqtt
import pytest
from bson import ObjectId

from ingest.mqtt import (
    Delivery,
    MqttConnectFailed,
    MqttConnectionLost,
    MqttSubscriber,
    PublishRefused,
)
from tests.brokers import ManagedBroker
from tests.integration.ingest.conftest import IngestIdentities


def unique_topic() -> str:
    return f"devices/{ObjectId()}/telemetry"


@asynccontextmanager
async def subscriber(
    broker: ManagedBroker,
    identities: IngestIdentities,
    client_id: str,
    topic: str,
    **options: object,
) -> AsyncIterator[MqttSubscriber]:
    client = MqttSubscriber(
        broker.host,
        broker.port,
        client_id=client_id,
        username=identities.worker.username,
        password=identities.worker.password,
        session_expiry=300,
        **options,  # type: ignore[arg-type]
    )
    async with client:
        await client.subscribe([(topic, 1)])
        yield client


async def receive(client: MqttSubscriber, count: int, *, timeout: float = 10) -> list[Delivery]:
    """The next `count` deliveries, whatever batches they come in."""
    received: list[Delivery] = []
    async with asyncio.timeout(timeout):
        async for batch in client.batches():
            received += batch
            if len(received) >= count:
                break
    return received


async def publish(publisher: aiomqtt.Client, topic: str, *payloads: str) -> None:
    for payload in payloads:
        await publisher.publish(topic, payload, qos=1)


async def test_receive_acknowledged_messages_not_redelivered(
    managed_broker: ManagedBroker, ingest_identities: IngestIdentities, publisher: aiomqtt.Client
) -> None:
    topic, client_id = unique_topic(), f"test-{uuid.uuid4().hex[:8]}"
    async with subscriber(managed_broker, ingest_identities, client_id, topic) as client:
        assert not client.session_present
        await publish(publisher, topic, "a", "b", "c")
        received = await receive(client, 3)
        for delivery in received:
            delivery.ack()
        await asyncio.sleep(0)  # the PUBACKs go out at the end of this loop turn
    assert [(d.payload, d.qos, d.dup, d.topic) for d in received] == [
        (b"a", 1, False, topic),
        (b"b", 1, False, topic),
        (b"c", 1, False, topic),
    ]
    async with subscriber(managed_broker, ingest_identities, client_id, topic) as client:
        assert client.session_present
        await publish(publisher, topic, "after")
        # A redelivery would come first: the broker resends before anything new.
        again = await receive(client, 1)
        for delivery in again:
            delivery.ack()
    assert [(d.payload, d.dup) for d in again] == [(b"after", False)]


async def test_redeliver_unacknowledged_messages_marked_dup(
    managed_broker: ManagedBroker, ingest_identities: IngestIdentities, publisher: aiomqtt.Client
) -> None:
    topic, client_id = unique_topic(), f"test-{uuid.uuid4().hex[:8]}"
    async with subscriber(managed_broker, ingest_identities, client_id, topic) as client:
        await publish(publisher, topic, "a", "b", "c")
        first, *_ = await receive(client, 3)
        first.ack()  # b and c stay unacknowledged: not stored, as far as the broker knows
        await asyncio.sleep(0)
    async with subscriber(managed_broker, ingest_identities, client_id, topic) as client:
        again = await receive(client, 2)
        for delivery in again:
            delivery.ack()
        await asyncio.sleep(0)
    assert [(d.payload, d.dup) for d in again] == [(b"b", True), (b"c", True)]


async def test_ack_on_closed_connection_ignored_then_redelivered(
    managed_broker: ManagedBroker, ingest_identities: IngestIdentities, publisher: aiomqtt.Client
) -> None:
    topic, client_id = unique_topic(), f"test-{uuid.uuid4().hex[:8]}"
    async with subscriber(managed_broker, ingest_identities, client_id, topic) as client:
        await publish(publisher, topic, "late")
        [late] = await receive(client, 1)
    late.ack()  # stored after the connection was gone: nothing is sent
    async with subscriber(managed_broker, ingest_identities, client_id, topic) as client:
        [again] = await receive(client, 1)
        again.ack()
        await asyncio.sleep(0)
    assert (again.payload, again.dup, again.mid) == (b"late", True, late.mid)


async def test_receive_maximum_bounds_unacknowledged_messages(
    managed_broker: ManagedBroker, ingest_identities: IngestIdentities, publisher: aiomqtt.Client
) -> None:
    topic, client_id = unique_topic(), f"test-{uuid.uuid4().hex[:8]}"
    async with subscriber(
        managed_broker, ingest_identities, client_id, topic, receive_maximum=5
    ) as client:
        await publish(publisher, topic, *[str(n) for n in range(12)])
        first = await receive(client, 5)
        # Nothing more while these five are unacknowledged.
        with pytest.raises(TimeoutError):
            await receive(client, 1, timeout=1.0)
        for delivery in first:
            delivery.ack()
        rest = await receive(client, 7)
        for delivery in rest:
            delivery.ack()
        await asyncio.sleep(0)
    assert [d.payload for d in first] == [str(n).encode() for n in range(5)]
    assert [d.payload for d in rest] == [str(n).encode() for n in range(5, 12)]


async def test_keepalive_pings_answered(
    managed_broker: ManagedBroker, ingest_identities: IngestIdentities, publisher: aiomqtt.Client
) -> None:
    topic = unique_topic()
    async with subscriber(
        managed_broker, ingest_identities, f"test-{uuid.uuid4().hex[:8]}", topic, keepalive=1
    ) as client:
        # Silent for three keepalive intervals: the broker closes a client that does not
        # ping within 1.5, and the client closes a link whose PINGREQ went unanswered
        # for one; either would end the session and fail the receive below.
        await asyncio.sleep(3.5)
        await publish(publisher, topic, "still here")
        [delivery] = await receive(client, 1)
        delivery.ack()
    assert delivery.payload == b"still here"


async def test_connect_bad_password_refused(
    managed_broker: ManagedBroker, ingest_identities: IngestIdentities
) -> None:
    client = MqttSubscriber(
        managed_broker.host,
        managed_broker.port,
        client_id=f"test-{uuid.uuid4().hex[:8]}",
        username=ingest_identities.worker.username,
        password="not-the-password",
    )
    with pytest.raises(MqttConnectFailed, match=r"refused the connection: 0x8[67]"):
        async with client:
            pass


async def test_connect_nobody_listening_error(ingest_identities: IngestIdentities) -> None:
    from tests.net import free_port

    client = MqttSubscriber("127.0.0.1", free_port(), client_id="nobody", timeout=5)
    with pytest.raises(MqttConnectFailed, match="cannot connect"):
        async with client:
            pass


async def test_subscribe_outside_acl_refused(
    managed_broker: ManagedBroker, ingest_identities: IngestIdentities
) -> None:
    client = MqttSubscriber(
        managed_broker.host,
        managed_broker.port,
        client_id=f"test-{uuid.uuid4().hex[:8]}",
        username=ingest_identities.worker.username,
        password=ingest_identities.worker.password,
    )
    async with client:
        with pytest.raises(MqttConnectFailed, match="subscription refused: users/#: 0x87"):
            await client.subscribe([("users/#", 1)])


async def test_session_taken_over_connection_lost(
    managed_broker: ManagedBroker, ingest_identities: IngestIdentities
) -> None:
    topic, client_id = unique_topic(), f"test-{uuid.uuid4().hex[:8]}"
    async with (
        subscriber(managed_broker, ingest_identities, client_id, topic) as first,
        subscriber(managed_broker, ingest_identities, client_id, topic),
    ):
        # Mosquitto 2.0.11 closes the old connection (newer ones first send
        # DISCONNECT 0x8E, "session taken over", which ends up in the message).
        with pytest.raises(MqttConnectionLost):
            await receive(first, 1)


async def test_malformed_packet_from_broker_connection_lost() -> None:
    """A peer that answers CONNECT and SUBSCRIBE, then sends a PUBLISH with QoS 3."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read(1024)  # CONNECT
            writer.write(b"\x20\x03\x00\x00\x00")  # CONNACK: new session, success
            await reader.read(1024)  # SUBSCRIBE, packet identifier 1
            writer.write(b"\x90\x04\x00\x01\x00\x01")  # SUBACK: QoS 1 granted
            writer.write(b"\x36\x06\x00\x01a\x00\x01\x00")
            await reader.read(1024)  # until the client hangs up
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        # Read with the SUBACK or after it: the subscription or the stream fails.
        with pytest.raises(MqttConnectionLost, match="malformed packet: PUBLISH with QoS 3"):
            async with MqttSubscriber("127.0.0.1", port, client_id="c") as client:
                await client.subscribe([("devices/+/telemetry", 1)])
                await receive(client, 1)
    finally:
        server.close()
        await server.wait_closed()


async def test_publish_qos1_acknowledged_and_refused_outside_acl(
    managed_broker: ManagedBroker, ingest_identities: IngestIdentities, publisher: aiomqtt.Client
) -> None:
    # The test worker identity may receive device uplinks and publish nothing.
    topic, client_id = unique_topic(), f"test-{uuid.uuid4().hex[:8]}"
    async with subscriber(managed_broker, ingest_identities, client_id, topic) as client:
        try:
            await client.publish(f"devices/{ObjectId()}/twin/desired", b"{}", qos=1)
        except PublishRefused as refused:
            assert "not authorized" in str(refused)
        else:
            pytest.fail("the broker took a publish the identity's role does not allow")
        # The connection stays usable: PUBACK and the stream go on.
        await publish(publisher, topic, "after")
        (delivery,) = await receive(client, 1)
        assert delivery.payload == b"after"
