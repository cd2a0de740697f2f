"""Request slots shared among owners, as a pure state machine."""

from __future__ import annotations

import pytest

from ingest.fair_share import FairShare


def test_grant_slots_owner_share_and_round_robin() -> None:
    share: FairShare[str] = FairShare(slots=2, per_owner=1)
    assert share.request("hostile", "h1")
    assert not share.request("hostile", "h2")  # at its own limit, a slot still free
    assert not share.request("hostile", "h3")
    assert share.request("other", "o1")  # the free slot: not behind the hostile queue
    assert not share.request("third", "t1")
    assert (share.held, share.waiting) == (2, 3)
    # Turns go round the owners waiting, one ticket each.
    assert share.release("hostile") == [("hostile", "h2")]
    assert share.release("other") == [("third", "t1")]
    assert share.release("hostile") == [("hostile", "h3")]
    assert share.release("third") == []
    assert share.release("hostile") == []
    assert (share.held, share.waiting) == (0, 0)


def test_serve_each_owner_in_turn_many_waiting() -> None:
    share: FairShare[str] = FairShare(slots=1, per_owner=1)
    assert share.request("a", "a0")
    for i in range(1, 4):
        share.request("a", f"a{i}")
    share.request("b", "b1")
    order = []
    holder = "a"
    while True:
        granted = share.release(holder)
        if not granted:
            break
        [(holder, ticket)] = granted
        order.append(ticket)
    assert order == ["a1", "b1", "a2", "a3"]


def test_cancel_waiting_ticket_only() -> None:
    share: FairShare[str] = FairShare(slots=1, per_owner=1)
    assert share.request("a", "a1")
    assert not share.request("b", "b1")
    assert share.cancel("b", "b1")
    assert not share.cancel("b", "b1")
    assert not share.cancel("a", "a1")  # holding, not waiting
    assert share.release("a") == []


@pytest.mark.parametrize("bad", [(0, 1), (1, 0)])
def test_refuse_fair_share_parameters_out_of_range(bad: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="required"):
        FairShare(*bad)
