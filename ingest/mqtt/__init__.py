"""The ingest worker's own MQTT 5 client: a QoS 1 subscriber, PUBACK only after storage.

A delivery is acknowledged (`Delivery.ack()`) once the worker has stored it, and
the PUBACKs of a batch go out in one write; until then the broker keeps the message
in the persistent session and sends it again (marked DUP) after a reconnect. The
broker's Receive Maximum bounds what is unacknowledged.

Hand-written on purpose, and only the receive path a QoS 1 subscriber needs:
under load it costs several times less CPU per message than gmqtt or paho, and
neither hands over a batch per socket read. The measurements and the comparison
are in docs/performance.md, "MQTT: receive QoS 1, acknowledge after storage".
The rest of the platform speaks MQTT through aiomqtt; this client's errors are
`MqttClientError` and its subclasses, never aiomqtt's.

- `codec`: the packets on the wire and an incremental decoder;
- `connection`: one TCP connection's asyncio protocol, its deliveries and errors;
- `subscriber`: `MqttSubscriber`, the session the worker drives.
"""

from ingest.mqtt.connection import (
    Delivery,
    MqttClientError,
    MqttConnectFailed,
    MqttConnectionLost,
    PublishRefused,
)
from ingest.mqtt.subscriber import MqttSubscriber

__all__ = [
    "Delivery",
    "MqttClientError",
    "MqttConnectFailed",
    "MqttConnectionLost",
    "MqttSubscriber",
    "PublishRefused",
]
