"""The RabbitMQ and EMQX request mappings of api/broker_auth.py (no broker here: the
RabbitMQ side runs for real in tests/system/rabbitmq; EMQX is not installable here)."""

from __future__ import annotations

import base64

import pytest
from pydantic import SecretStr
from starlette.requests import Request

from api.broker_auth import (
    caller_allowed,
    emqx_action,
    emqx_authz,
    emqx_result,
    rabbitmq_resource,
    rabbitmq_topic,
    rabbitmq_topic_access,
)
from core.settings import ApiSettings
from services.broker_rules import BrokerParty

DEVICE = "a" * 24
OTHER = "b" * 24
SETTINGS = ApiSettings(_env_file=None, mqtt_ingest_password="ingest-secret")  # type: ignore[call-arg]
DEVICE_PARTY = BrokerParty("device", DEVICE, DEVICE)
INGEST_PARTY = BrokerParty("ingest", "iot-ingest-1", "ingest-1")


def request_with(authorization: str | None) -> Request:
    headers = [] if authorization is None else [(b"authorization", authorization.encode())]
    return Request({"type": "http", "method": "POST", "headers": headers})


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_caller_must_present_the_secret_as_basic_password() -> None:
    secret = SecretStr("s3cret-value")
    assert caller_allowed(request_with(basic("rabbitmq", "s3cret-value")), secret)
    assert not caller_allowed(request_with(basic("rabbitmq", "wrong")), secret)
    assert not caller_allowed(request_with("Bearer s3cret-value"), secret)
    assert not caller_allowed(request_with("Basic !!!"), secret)
    assert not caller_allowed(request_with(None), secret)


@pytest.mark.parametrize(
    ("routing_key", "topic"),
    [
        (f"devices.{DEVICE}.telemetry", f"devices/{DEVICE}/telemetry"),
        (f"devices.{DEVICE}.commands.#", f"devices/{DEVICE}/commands/#"),
        ("devices.*.telemetry", "devices/+/telemetry"),
        (f"devices.{DEVICE}.commands.c1.result", f"devices/{DEVICE}/commands/c1/result"),
    ],
)
def test_rabbitmq_routing_keys_back_to_mqtt(routing_key: str, topic: str) -> None:
    assert rabbitmq_topic(routing_key) == topic


def topic_check(party: BrokerParty, permission: str, key: str, client_id: str | None) -> bool:
    return rabbitmq_topic_access(
        party,
        SETTINGS,
        exchange="amq.topic",
        permission=permission,
        routing_key=key,
        client_id=client_id,
    )


def test_rabbitmq_topic_write_and_read() -> None:
    own = f"devices.{DEVICE}"
    assert topic_check(DEVICE_PARTY, "write", f"{own}.telemetry", DEVICE)
    assert not topic_check(DEVICE_PARTY, "write", f"devices.{OTHER}.telemetry", DEVICE)
    # A device never publishes to its downlink, nor with a wildcard.
    assert not topic_check(DEVICE_PARTY, "write", f"{own}.ota", DEVICE)
    assert not topic_check(DEVICE_PARTY, "write", "devices.*.telemetry", DEVICE)
    assert topic_check(DEVICE_PARTY, "read", f"{own}.commands.#", DEVICE)
    assert not topic_check(DEVICE_PARTY, "read", f"devices.{OTHER}.commands.#", DEVICE)
    assert not topic_check(DEVICE_PARTY, "read", "devices.*.commands.#", DEVICE)
    assert not topic_check(DEVICE_PARTY, "configure", f"{own}.telemetry", DEVICE)
    # Another client id than the bound one, or another exchange: refused.
    assert not topic_check(DEVICE_PARTY, "write", f"{own}.telemetry", OTHER)
    assert not rabbitmq_topic_access(
        DEVICE_PARTY,
        SETTINGS,
        exchange="amq.direct",
        permission="write",
        routing_key=f"{own}.telemetry",
        client_id=DEVICE,
    )
    # The ingest worker reads every device's uplinks.
    assert topic_check(INGEST_PARTY, "read", "devices.*.telemetry", "ingest-1")
    assert not topic_check(INGEST_PARTY, "read", "devices.*.ota", "ingest-1")
    assert not topic_check(INGEST_PARTY, "read", "devices.*.telemetry", "ingest-2")


def test_rabbitmq_resources_only_amq_topic_and_own_queues() -> None:
    assert rabbitmq_resource(DEVICE_PARTY, "exchange", "amq.topic", "write")
    assert rabbitmq_resource(DEVICE_PARTY, "exchange", "amq.topic", "read")
    assert not rabbitmq_resource(DEVICE_PARTY, "exchange", "amq.topic", "configure")
    assert not rabbitmq_resource(DEVICE_PARTY, "exchange", "amq.fanout", "write")
    for permission in ("configure", "write", "read"):
        assert rabbitmq_resource(
            DEVICE_PARTY, "queue", f"mqtt-subscription-{DEVICE}qos1", permission
        )
    assert rabbitmq_resource(INGEST_PARTY, "queue", "mqtt-subscription-ingest-1qos0", "read")
    assert not rabbitmq_resource(DEVICE_PARTY, "queue", f"mqtt-subscription-{OTHER}qos1", "read")
    assert not rabbitmq_resource(INGEST_PARTY, "queue", "mqtt-subscription-ingest-2qos1", "read")
    assert not rabbitmq_resource(DEVICE_PARTY, "queue", "anything", "read")
    assert not rabbitmq_resource(DEVICE_PARTY, "topic", "amq.topic", "write")


def test_rabbitmq_ingest_quorum_queues_only_for_the_ingest_workers() -> None:
    for permission in ("configure", "write", "read"):
        assert rabbitmq_resource(INGEST_PARTY, "queue", "iot-ingest.telemetry", permission)
        # A device may not declare, bind or drain the workers' queues.
        assert not rabbitmq_resource(DEVICE_PARTY, "queue", "iot-ingest.telemetry", permission)
    assert not rabbitmq_resource(INGEST_PARTY, "queue", "iot-ingestx.telemetry", "read")
    api_party = BrokerParty("api", "iot-api-x", "iot-api-x")
    assert not rabbitmq_resource(api_party, "queue", "iot-ingest.telemetry", "read")


def test_emqx_authz_mapping() -> None:
    def body(topic: str, action: str, clientid: str = DEVICE) -> dict[str, object]:
        return {"username": DEVICE, "clientid": clientid, "topic": topic, "action": action}

    own = f"devices/{DEVICE}"
    assert emqx_authz(DEVICE_PARTY, SETTINGS, body(f"{own}/telemetry", "publish"))
    assert emqx_authz(DEVICE_PARTY, SETTINGS, body(f"{own}/commands/#", "subscribe"))
    assert not emqx_authz(DEVICE_PARTY, SETTINGS, body(f"devices/{OTHER}/telemetry", "publish"))
    assert not emqx_authz(DEVICE_PARTY, SETTINGS, body(f"{own}/ota", "publish"))
    assert not emqx_authz(DEVICE_PARTY, SETTINGS, body("devices/+/ota", "subscribe"))
    assert not emqx_authz(DEVICE_PARTY, SETTINGS, body(f"{own}/telemetry", "publish", OTHER))
    assert not emqx_authz(DEVICE_PARTY, SETTINGS, body(f"{own}/telemetry", "all"))
    assert not emqx_authz(None, SETTINGS, body(f"{own}/telemetry", "publish"))
    assert emqx_authz(
        INGEST_PARTY,
        SETTINGS,
        {"clientid": "ingest-1", "topic": "$share/ingest/devices/+/logs", "action": "subscribe"},
    )


def test_emqx_answers() -> None:
    assert emqx_result(True) == {"result": "allow", "is_superuser": False}
    assert emqx_result(False) == {"result": "deny", "is_superuser": False}
    assert emqx_action("publish") == "publish"
    assert emqx_action("subscribe") == "subscribe"
    assert emqx_action("all") is None
