"""The HTTP decision (services.broker_rules) agrees with dynsec's ACLs and with the
topic-kind registry, for every kind and party (one set of rules, two enforcers)."""

from __future__ import annotations

import re

import pytest

from core.settings import ApiSettings
from core.topics import TOPIC_KINDS, Party, TopicKind
from services.broker_identities import device_acls
from services.broker_rules import BrokerParty, acls_for, decide, filter_covers, topic_matches

DEVICE = "a" * 24
OTHER = "b" * 24
PARTIES: tuple[Party, ...] = ("device", "ingest", "api", "api_ota")


def settings(share_group: str = "") -> ApiSettings:
    return ApiSettings(
        _env_file=None,  # type: ignore[call-arg]
        mqtt_ingest_password="ingest-secret",
        ingest_share_group=share_group,
    )


def party(name: Party) -> BrokerParty:
    username = DEVICE if name == "device" else f"user-{name}"
    return BrokerParty(name, username, username)


def concrete(kind: TopicKind, device_id: str) -> str:
    return f"devices/{device_id}/" + re.sub(r"\{[^}/]+\}", "c1", kind.suffix)


@pytest.mark.parametrize("kind", TOPIC_KINDS, ids=lambda kind: kind.name)
@pytest.mark.parametrize("who", PARTIES)
def test_decide_agrees_with_the_registry_for_every_kind_and_party(
    kind: TopicKind, who: Party
) -> None:
    acls = acls_for(party(who), settings())
    own = concrete(kind, DEVICE)
    # From the registry alone: a kind whose filter matches the topic (the command
    # kind's filter, commands/#, also covers commands/{id}/result, in dynsec too).
    covering = [k for k in TOPIC_KINDS if k.granted and topic_matches(k.topic(DEVICE), own)]
    may_publish = any(who in (k.publisher, k.republisher) for k in covering)
    may_receive = any(who == k.receiver for k in covering)
    assert decide(acls, "publish", own) is may_publish
    assert decide(acls, "subscribe", own) is may_receive
    assert decide(acls, "subscribe", kind.topic(DEVICE)) is may_receive
    # Another device's topics: only the services, never a device.
    foreign = concrete(kind, OTHER)
    assert decide(acls, "publish", foreign) is (may_publish and who != "device")
    assert decide(acls, "subscribe", foreign) is (may_receive and who != "device")
    # Every device's topics of the kind (a wildcard over devices): services only.
    assert decide(acls, "subscribe", kind.pattern) is (may_receive and who != "device")


def test_decide_allows_exactly_what_the_dynsec_acl_list_allows() -> None:
    acls = device_acls(DEVICE)
    for acl in acls:
        if acl.acltype == "publishClientSend":
            assert decide(acls, "publish", acl.topic.replace("+", "x")), acl
        if acl.acltype == "subscribePattern":
            assert decide(acls, "subscribe", acl.topic), acl
    # Nothing outside its devices/<id>/ tree, no wildcard across devices.
    for topic in ("#", "devices/#", f"devices/{DEVICE}/#", "devices/+/telemetry", "$SYS/#"):
        assert not decide(acls, "subscribe", topic), topic
    for topic in (f"devices/{DEVICE}", f"devices/{DEVICE}/telemetry/x", "other"):
        assert not decide(acls, "publish", topic), topic


def test_publish_to_a_wildcard_topic_refused() -> None:
    acls = acls_for(party("ingest"), settings())
    assert decide(acls, "publish", f"devices/{DEVICE}/twin/desired")
    assert not decide(acls, "publish", "devices/+/twin/desired")
    assert not decide(acls, "publish", "devices/#")


def test_shared_subscription_checked_against_its_filter() -> None:
    acls = acls_for(party("ingest"), settings("ingest"))
    assert decide(acls, "subscribe", "$share/ingest/devices/+/telemetry")
    assert not decide(acls, "subscribe", "$share/other/devices/+/telemetry")
    assert not decide(acls, "subscribe", "$share/ingest/devices/+/ota")
    device = acls_for(party("device"), settings("ingest"))
    assert not decide(device, "subscribe", "$share/ingest/devices/+/telemetry")


@pytest.mark.parametrize(
    ("pattern", "subscription", "covered"),
    [
        ("devices/x/commands/#", "devices/x/commands/#", True),
        ("devices/x/commands/#", "devices/x/commands/+", True),
        ("devices/x/commands/#", "devices/x/commands", True),
        ("devices/x/commands/#", "devices/+/commands/#", False),
        ("devices/+/telemetry", "devices/x/telemetry", True),
        ("devices/+/telemetry", "devices/+/telemetry", True),
        ("devices/+/telemetry", "devices/#", False),
        ("devices/x/ota", "devices/x/+", False),
        ("devices/x/ota", "devices/x/ota/more", False),
    ],
)
def test_filter_covers(pattern: str, subscription: str, covered: bool) -> None:
    assert filter_covers(pattern, subscription) is covered


def test_topic_matches() -> None:
    assert topic_matches("devices/+/telemetry", "devices/x/telemetry")
    assert topic_matches("devices/x/commands/#", "devices/x/commands/c1/result")
    assert not topic_matches("devices/+/telemetry", "devices/x/y/telemetry")
    assert not topic_matches("devices/x/telemetry", "devices/x/telemetry/")
    assert not topic_matches("devices/x/telemetry", "")
