"""The AMQP source's plain parts (ingest/amqp.py): names, routing keys, URLs, dedup keys.
The source itself runs against real RabbitMQ nodes in tests/system/rabbitmq."""

from __future__ import annotations

from core.settings import WorkerSettings
from core.topics import CONSUMED
from ingest.amqp import AmqpDelivery, AmqpSource, binding_key, ingest_queues, mqtt_topic
from ingest.mqtt.connection import Delivery as MqttDelivery
from ingest.store import source_key
from ingest.worker import amqp_urls

DEVICE = "a" * 24


def test_one_quorum_queue_per_consumed_kind_bound_as_the_mqtt_plugin_routes() -> None:
    queues = dict(ingest_queues())
    assert len(queues) == len(CONSUMED)
    assert queues["iot-ingest.telemetry"] == "devices.*.telemetry"
    assert queues["iot-ingest.command_result"] == "devices.*.commands.*.result"
    assert queues["iot-ingest.ota_progress"] == "devices.*.ota.progress"
    assert binding_key("devices/+/logs") == "devices.*.logs"
    assert mqtt_topic(f"devices.{DEVICE}.twin.reported") == f"devices/{DEVICE}/twin/reported"


def test_amqp_url_lists_the_nodes_in_order() -> None:
    settings = WorkerSettings(
        _env_file=None,  # type: ignore[call-arg]
        amqp_url=" amqp://a:5672/, amqp://b:5672/ ,,",
    )
    assert amqp_urls(settings) == ["amqp://a:5672/", "amqp://b:5672/"]
    assert amqp_urls(WorkerSettings(_env_file=None)) == ["amqp://127.0.0.1:5672/"]  # type: ignore[call-arg]


def test_dedup_key_is_the_same_in_every_worker_for_amqp_not_for_mqtt() -> None:
    source = AmqpSource("amqp://127.0.0.1:1/")
    topic = f"devices/{DEVICE}/telemetry"
    first = AmqpDelivery(source, 1, topic, b'{"n": 1}', dup=False)
    again = AmqpDelivery(source, 7, topic, b'{"n": 1}', dup=True)  # another tag, worker
    other = AmqpDelivery(source, 2, f"devices/{'b' * 24}/telemetry", b'{"n": 1}', dup=False)
    assert source_key("ingest-1", first) == source_key("ingest-2", again)
    assert source_key("ingest-1", first) != source_key("ingest-1", other)
    # MQTT: the worker's own session numbers its messages; its client id is in the key.
    mqtt = MqttDelivery(None, topic, b'{"n": 1}', 1, 5, False, False)  # type: ignore[arg-type]
    assert source_key("ingest-1", mqtt) != source_key("ingest-2", mqtt)


def test_acks_after_the_connection_is_lost_are_dropped() -> None:
    source = AmqpSource("amqp://127.0.0.1:1/")
    source._on_close(None, ConnectionError("gone"))
    source.ack(3)  # no channel any more: RabbitMQ redelivers instead
    assert source._acks == []
