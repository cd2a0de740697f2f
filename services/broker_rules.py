"""Broker-neutral decisions over the ACLs of services.broker_identities.

Mosquitto enforces those ACLs through dynsec; a broker with an HTTP auth backend
(RabbitMQ, EMQX: api/broker_auth.py) asks these functions instead. They read the very
same Acl sets (device_acls, ingest_acls, api_acls, api_ota_acls), so the rules exist
once. Plain data: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from core.settings import ApiSettings
from core.topics import Party
from services.broker_identities import (
    Acl,
    api_acls,
    api_ota_acls,
    device_acls,
    ingest_acls,
)

# The ingest workers' quorum queues on RabbitMQ (INGEST_SOURCE=amqp, ingest/amqp.py):
# `iot-ingest.<kind>`; only the ingest identities may declare, bind and consume them.
INGEST_QUEUE_PREFIX: Final = "iot-ingest."

# What a client asks for: send a message to a topic, subscribe with a filter.
type Action = Literal["publish", "subscribe"]


@dataclass(frozen=True, slots=True)
class BrokerParty:
    """An authenticated broker client: who it is and the one client id it may use."""

    party: Party
    username: str
    client_id: str


def acls_for(party: BrokerParty, settings: ApiSettings) -> frozenset[Acl]:
    """The ACLs dynsec gives this party's role."""
    match party.party:
        case "device":
            return device_acls(party.username)
        case "ingest":
            return ingest_acls(settings)
        case "api":
            return api_acls()
        case "api_ota":
            return api_ota_acls()


def _levels(value: str) -> list[str]:
    return value.split("/")


def topic_matches(pattern: str, topic: str) -> bool:
    """MQTT: does the filter `pattern` match the concrete `topic`?"""
    if not topic or "+" in topic or "#" in topic:
        return False
    wanted, given = _levels(pattern), _levels(topic)
    for index, level in enumerate(wanted):
        if level == "#":
            return True
        if index >= len(given) or (level != "+" and level != given[index]):
            return False
    return len(wanted) == len(given)


def filter_covers(pattern: str, subscription: str) -> bool:
    """Does the ACL filter `pattern` allow a subscription with `subscription`?

    Every topic the subscription could match must match the pattern: `#` covers the
    rest, `+` one level (a literal or `+`, never `#`), a literal only itself."""
    if not subscription:
        return False
    wanted, given = _levels(pattern), _levels(subscription)
    for index, level in enumerate(wanted):
        if level == "#":
            return True
        if index >= len(given):
            return False
        asked = given[index]
        if asked == "#" or (level != "+" and level != asked):
            return False
    return len(wanted) == len(given)


def _allowed(acls: Iterable[Acl], acltype: str, check: str, *, subscribe: bool) -> bool:
    match = filter_covers if subscribe else topic_matches
    return any(acl.acltype == acltype and match(acl.topic, check) for acl in acls)


def decide(acls: frozenset[Acl], action: Action, topic: str) -> bool:
    """True when dynsec with these ACLs allows `action` on `topic`.

    A subscription is allowed when a subscribePattern covers it and a
    publishClientReceive covers it too: brokers without a check per delivered message
    (RabbitMQ, EMQX) decide at subscription time what dynsec decides per message."""
    if action == "publish":
        return _allowed(acls, "publishClientSend", topic, subscribe=False)
    # What a shared subscription delivers is checked against its own filter.
    delivered = topic
    if topic.startswith("$share/"):
        parts = topic.split("/", 2)
        delivered = parts[2] if len(parts) == 3 and parts[1] else ""
    return _allowed(acls, "subscribePattern", topic, subscribe=True) and _allowed(
        acls, "publishClientReceive", delivered, subscribe=True
    )
