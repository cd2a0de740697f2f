"""Pure rules: OTA progress payloads, the topic kind, offers, what a subscriber is shown."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from beanie import PydanticObjectId

from core.events import OtaProgressEvent
from firmware.dispatcher import offer_payload
from firmware.progress import ProgressView
from ingest.payloads import Rejected, parse_ota_progress, parse_topic
from models.firmware import Firmware

UPDATE = "a" * 24
AT = datetime(2025, 6, 1, tzinfo=UTC)


def test_parse_topic_knows_ota_progress() -> None:
    topic = parse_topic(f"devices/{'b' * 24}/ota/progress")
    assert (topic.device_id, topic.kind) == ("b" * 24, "ota_progress")
    with pytest.raises(Rejected):
        parse_topic(f"devices/{'b' * 24}/ota")


def test_parse_ota_progress_reads_contract_payload() -> None:
    payload = {"updateId": UPDATE, "state": "DOWNLOADING", "progress": 42.7, "error": "a\x00b"}
    report = parse_ota_progress(json.dumps(payload).encode())
    assert (report.update_id, report.state, report.progress, report.error) == (
        UPDATE,
        "DOWNLOADING",
        42,
        "ab",
    )
    bare = parse_ota_progress(json.dumps({"updateId": UPDATE, "state": "SUCCEEDED"}).encode())
    assert (bare.progress, bare.error) == (None, None)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"[]",
        b'{"updateId": "x", "state": "DOWNLOADING"}',
        json.dumps({"updateId": UPDATE}).encode(),
        json.dumps({"updateId": UPDATE, "state": "PENDING"}).encode(),
        json.dumps({"updateId": UPDATE, "state": "FAILED", "progress": -1}).encode(),
        json.dumps({"updateId": UPDATE, "state": "FAILED", "progress": True}).encode(),
        json.dumps({"updateId": UPDATE, "state": "FAILED", "error": 5}).encode(),
        b'{"updateId": "' + UPDATE.encode() + b'", "state": "FAILED", "progress": NaN}',
    ],
)
def test_parse_ota_progress_rejects_malformed(payload: bytes) -> None:
    with pytest.raises(Rejected) as caught:
        parse_ota_progress(payload)
    assert caught.value.reason == "bad_ota_progress"


def test_parse_ota_progress_rejects_oversized() -> None:
    with pytest.raises(Rejected) as caught:
        parse_ota_progress(b" " * (64 * 1024 + 1))
    assert caught.value.reason == "too_large"


def event(device: str, state: str, progress: int) -> OtaProgressEvent:
    return OtaProgressEvent(UPDATE, device, "o" * 24, state, progress, None, AT)


def test_progress_view_shows_only_news_and_finishes() -> None:
    view = ProgressView(2)
    assert view.accept(event("d1", "DOWNLOADING", 50))
    assert not view.accept(event("d1", "DOWNLOADING", 50))  # seen
    assert not view.accept(event("d1", "DOWNLOADING", 25))  # older
    assert not view.accept(event("d1", "DISPATCHED", 0))  # older
    assert view.accept(event("d1", "SUCCEEDED", 100))
    assert not view.finished
    assert not view.accept(event("d2", "NONSENSE", 0))
    assert view.accept(event("d2", "FAILED", 0))
    assert not view.accept(event("d2", "FAILED", 0))
    assert view.finished


def test_offer_payload_follows_device_contract() -> None:
    firmware = Firmware(
        id=PydanticObjectId("c" * 24),
        device_type="esp32",
        version="1.0.0",
        size=10,
        sha256="d" * 64,
        signature="sig",
        public_key="key",
        file_id=PydanticObjectId("e" * 24),
        created_by=PydanticObjectId("f" * 24),
    )
    relative = json.loads(offer_payload(firmware, UPDATE, ""))
    assert relative == {
        "updateId": UPDATE,
        "version": "1.0.0",
        "url": f"/firmware/{'c' * 24}/download",
        "size": 10,
        "sha256": "d" * 64,
        "signature": "sig",
    }
    absolute = json.loads(offer_payload(firmware, UPDATE, "https://iot.example.com/"))
    assert absolute["url"] == f"https://iot.example.com/firmware/{'c' * 24}/download"
