"""simulator.twin.TwinAgent: which desired documents a simulated device takes."""

from __future__ import annotations

import json

from simulator.twin import FIRMWARE_VERSION, TwinAgent


def document(version: int, desired: object) -> bytes:
    return json.dumps({"version": version, "desired": desired}).encode()


def test_apply_desired_interval_taken_once_per_version() -> None:
    agent = TwinAgent("d1", interval=5.0)
    assert agent.apply(document(1, {"interval": 2, "other": "x"}))
    assert (agent.interval, agent.version, agent.changed.is_set()) == (2.0, 1, True)
    assert not agent.apply(document(1, {"interval": 3}))  # a repeat (twin/get answer)
    assert not agent.apply(document(0, {"interval": 3}))  # older
    assert agent.interval == 2.0


def test_apply_unusable_interval_kept_reported_as_run() -> None:
    agent = TwinAgent("d1", interval=5.0)
    for version, wanted in enumerate(["fast", True, 0, 10_000, None], start=1):
        assert agent.apply(document(version, {"interval": wanted}))  # new: report back
        assert agent.interval == 5.0
    report = json.loads(agent.report())
    assert report["interval"] == 5.0 and report["firmwareVersion"] == FIRMWARE_VERSION


def test_apply_cleared_or_garbled_ignored() -> None:
    agent = TwinAgent("d1", interval=5.0)
    for payload in (b"", b"{", b"[]", b'{"version": "1", "desired": {}}', document(1, [])):
        assert not agent.apply(payload)
    assert agent.version == -1
