"""The topic registry (core.topics) against contract/devices.md and every layer that reads it."""

from __future__ import annotations

import re

import pytest

from core.settings import Settings
from core.topics import CONSUMED, TOPIC_KINDS, TopicKind, _check, check_handlers, granted
from ingest.payloads import Rejected, parse_topic
from ingest.stats import IngestStats
from ingest.worker import IngestWorker, subscription_filters
from services.broker_identities import Acl, api_acls, api_ota_acls, device_acls, ingest_acls
from tests.net import ROOT

CONTRACT = ROOT / "contract" / "devices.md"
DEVICE = "6b04424c61a616851779946e"
SECTIONS = {"Device to platform": "uplink", "Platform to device": "downlink"}


def contract_topics() -> dict[str, tuple[str, list[str]]]:
    """`suffix -> (direction, the row's other cells)` from the two topic tables."""
    topics: dict[str, tuple[str, list[str]]] = {}
    direction = None
    for line in CONTRACT.read_text().splitlines():
        if line.startswith("## "):
            direction = SECTIONS.get(line[3:].strip())
        elif direction and line.startswith("| `devices/"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            suffix = cells[0].strip("`").removeprefix("devices/{id}/")
            assert suffix not in topics, f"{suffix} listed twice"
            topics[suffix] = (direction, cells[1:])
    return topics


def kind(name: str) -> TopicKind:
    return next(k for k in TOPIC_KINDS if k.name == name)


def test_registry_topics_match_contract() -> None:
    contract = contract_topics()
    assert len(contract) >= 10  # the tables were found
    registry = {k.suffix: k.direction for k in TOPIC_KINDS}
    assert registry == {suffix: direction for suffix, (direction, _) in contract.items()}


@pytest.mark.parametrize("suffix", sorted(contract_topics()))
def test_registry_qos_and_retain_match_contract(suffix: str) -> None:
    direction, cells = contract_topics()[suffix]
    entry = next(k for k in TOPIC_KINDS if k.suffix == suffix)
    if direction == "uplink":
        qos_cell = cells[0]
        assert entry.qos == tuple(int(q) for q in re.findall(r"\b[012]\b", qos_cell))
        assert entry.retained == ("retained" in qos_cell)
    else:
        # The payload cell states QoS and retain where the contract fixes them.
        stated = re.match(r"(retained, )?QoS (\d)", cells[0])
        if stated:
            assert entry.qos == (int(stated.group(2)),)
            assert entry.retained == bool(stated.group(1))


def test_worker_handlers_cover_consumed_kinds() -> None:
    check_handlers(IngestWorker.HANDLERS)
    assert [k.name for k in CONSUMED] == [
        "telemetry",
        "status",
        "logs",
        "ota_progress",
        "command_result",
        "twin_reported",
        "twin_get",
    ]


def test_check_handlers_missing_kind_refused() -> None:
    with pytest.raises(RuntimeError, match="missing"):
        check_handlers(["telemetry", "status"])
    with pytest.raises(RuntimeError, match="unknown"):
        check_handlers([*IngestWorker.HANDLERS, "no_such_kind"])


def test_parse_topic_consumed_kinds_only() -> None:
    for entry in CONSUMED:
        # A filter's single-level wildcard stands for a concrete command id here.
        assert parse_topic(entry.topic(DEVICE).replace("+", "c1")).kind == entry.name
    # Not consumed (not an uplink): not the worker's.
    for entry in TOPIC_KINDS:
        if not entry.consumed:
            topic = f"devices/{DEVICE}/" + entry.suffix.replace("{commandId}", "c1")
            with pytest.raises(Rejected):
                parse_topic(topic)


def test_subscriptions_and_stats_labels_follow_registry() -> None:
    shared = subscription_filters(Settings.model_construct(ingest_share_group="g"))
    assert shared == [
        ("$share/g/devices/+/telemetry", 1),
        ("$share/g/devices/+/status", 1),
        ("$share/g/devices/+/logs", 1),
        ("$share/g/devices/+/ota/progress", 1),
        ("$share/g/devices/+/commands/+/result", 1),
        ("$share/g/devices/+/twin/reported", 1),
        ("$share/g/devices/+/twin/get", 1),
    ]
    alone = subscription_filters(Settings.model_construct(ingest_share_group=""))
    assert [f for f, _ in alone] == [k.pattern for k in CONSUMED]
    assert set(IngestStats().received_by_kind) == {k.name for k in CONSUMED}


def test_acls_follow_registry_unchanged() -> None:
    """The roles the broker holds today: a registry change that alters them shows here."""
    own = f"devices/{DEVICE}"
    assert device_acls(DEVICE) == frozenset(
        [Acl("publishClientSend", f"{own}/{s}") for s in ("telemetry", "status", "logs")]
        + [Acl("publishClientSend", f"{own}/ota/progress")]
        + [Acl("publishClientSend", f"{own}/commands/+/result")]
        + [Acl("publishClientSend", f"{own}/twin/{s}") for s in ("reported", "get")]
        + [Acl(t, f"{own}/{s}") for t in ("subscribePattern", "publishClientReceive")
           for s in ("ota", "commands/#", "twin/desired")]
    )  # fmt: skip
    uplinks = [
        f"devices/+/{s}"
        for s in ("telemetry", "status", "logs", "ota/progress", "commands/+/result")
    ]
    uplinks += ["devices/+/twin/reported", "devices/+/twin/get"]
    assert ingest_acls(Settings.model_construct(ingest_share_group="g")) == frozenset(
        [Acl("subscribePattern", t) for t in uplinks]
        + [Acl("subscribePattern", f"$share/g/{t}") for t in uplinks]
        + [Acl("publishClientReceive", t) for t in uplinks]
        # It answers twin/get itself.
        + [Acl("publishClientSend", "devices/+/twin/desired")]
    )
    assert Acl("publishClientSend", "devices/+/commands/#") in api_acls()
    assert Acl("publishClientSend", "devices/+/twin/desired") in api_acls()
    assert api_ota_acls() == frozenset([Acl("publishClientSend", "devices/+/ota")])


def test_registry_logs_allowed_and_consumed() -> None:
    logs = kind("logs")
    assert logs.granted and logs.consumed and logs.qos == (0, 1)
    # Every kind of the contract is served now: none waits ungranted.
    assert all(entry.granted for entry in TOPIC_KINDS)


def test_registry_twin_desired_republished_by_worker_only() -> None:
    desired = kind("twin_desired")
    assert (desired.publisher, desired.republisher, desired.retained) == ("api", "ingest", True)
    assert [k.name for k in granted(publisher="ingest")] == ["twin_desired"]
    with pytest.raises(RuntimeError, match="republished"):
        _check((TopicKind("x", "x", "downlink", "api", (1,), republisher="device"),))
