"""Live events survive their trip through Redis unchanged, in compact JSON."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.events import AlertEvent, OtaProgressEvent, ReadingEvent, StatusEvent

AT = datetime(2023, 3, 29, 13, 15, 56, 811550, tzinfo=UTC)
DEVICE, OWNER = "6b047cf39c3027190fdff801", "6b047cf39c3027190fdff802"

EVENTS = [
    ReadingEvent(DEVICE, OWNER, AT, False, (("temperature", 87.0, None), ("rh", 99.5, "%"))),
    ReadingEvent(DEVICE, OWNER, AT.replace(microsecond=0), True, ()),
    StatusEvent(DEVICE, OWNER, "ONLINE", AT),
    StatusEvent(DEVICE, OWNER, "OFFLINE", None),
    AlertEvent(
        change="raised",
        alert_id="a1",
        device_id=DEVICE,
        owner_id=OWNER,
        rule_id=None,
        kind="THRESHOLD",
        metric="temperature",
        value=91.5,
        message="temperature 91.5 above 90 (ünïcode ✓)",
        severity="CRITICAL",
        state="ACTIVE",
        raised_at=AT,
        acknowledged_at=None,
        cleared_at=AT,
        origin="ingest-1",
    ),
    OtaProgressEvent("u1", DEVICE, OWNER, "DOWNLOADING", 40, None, AT),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_event_round_trip_compact(event: object) -> None:
    raw = event.encode()  # type: ignore[attr-defined]
    assert type(event).decode(raw) == event  # type: ignore[attr-defined]
    assert type(event).decode(raw.decode()) == event  # type: ignore[attr-defined]
    assert b": " not in raw and b", " not in raw


def test_reading_event_wire_format() -> None:
    """What other processes (and older API versions) parse: keep it stable."""
    assert EVENTS[0].encode() == (
        b'{"d":"6b047cf39c3027190fdff801","o":"6b047cf39c3027190fdff802",'
        b'"t":"2023-03-29T13:15:56.811550+00:00","a":false,'
        b'"v":[["temperature",87.0,null],["rh",99.5,"%"]]}'
    )


def test_undecodable_event_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        ReadingEvent.decode(b"{not json")
    with pytest.raises(KeyError):
        ReadingEvent.decode(b'{"d":"x"}')
