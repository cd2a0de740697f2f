"""The running worker fuzzed over real MQTT: it never stops, and every message is accounted for.

Each example publishes a few messages (QoS 1) for a known device, an unknown one and a
malformed topic; once the worker has taken them all, each is stored (as many readings as
the contract's parser reads) or counted as dropped under its reason, and nothing else.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

import aiomqtt
import pytest
from beanie import PydanticObjectId
from hypothesis import given
from hypothesis import strategies as st

from ingest.payloads import REASONS, Rejected, parse_status, parse_telemetry
from ingest.stats import IngestStats
from ingest.worker import IngestWorker
from models.readings import Reading
from tests.client import Api
from tests.factories import CreatedDevice, create_device, register
from tests.integration.abuse.strategies import (
    fuzz_settings,
    status_payloads,
    telemetry_payloads,
    valid_telemetry_payloads,
)

KINDS = ("telemetry", "status")
# Single topic levels that are no device id.
MALFORMED_IDS = ("NOT-AN-ID", "6B04424C61A616851779946E", "123", "6b04424c61a616851779946")


@dataclass(frozen=True)
class Message:
    target: str  # "known", "unknown" or "malformed"
    kind: str
    payload: bytes


def messages() -> st.SearchStrategy[Message]:
    """Mostly for the known device: valid readings, anything at all, status words."""
    targets = st.sampled_from(["known"] * 6 + ["unknown", "malformed"])
    valid = st.builds(Message, st.just("known"), st.just("telemetry"), valid_telemetry_payloads())
    anything = st.builds(Message, targets, st.just("telemetry"), telemetry_payloads())
    status = st.builds(Message, targets, st.just("status"), status_payloads())
    return st.one_of(valid, valid, anything, anything, status)


@dataclass
class Tally:
    received: float
    dropped: Counter[str]
    stored: float

    @classmethod
    def of(cls, stats: IngestStats) -> Tally:
        registry = stats.registry
        received = sum(
            registry.get_sample_value("ingest_messages_received_total", {"kind": kind}) or 0.0
            for kind in KINDS
        )
        dropped: Counter[str] = Counter(
            {reason: int(stats.dropped_count(reason)) for reason in REASONS}
        )
        return cls(received, +dropped, stats.stored_count())

    def __sub__(self, other: Tally) -> Tally:
        return Tally(
            self.received - other.received, self.dropped - other.dropped, self.stored - other.stored
        )


def expected_tally(batch: list[Message]) -> Tally:
    """What the worker must count for `batch`, by the contract's parsers."""
    arrived = datetime.now(UTC)
    received, stored = 0, 0
    dropped: Counter[str] = Counter()
    for message in batch:
        if message.target == "malformed":
            dropped["bad_topic"] += 1
            continue
        received += 1
        if message.target == "unknown":
            dropped["unknown_device"] += 1
            continue
        try:
            if message.kind == "telemetry":
                stored += len(parse_telemetry(message.payload, arrived))
            else:
                parse_status(message.payload)
        except Rejected as rejected:
            dropped[rejected.reason] += 1
    return Tally(received, dropped, stored)


def topic(message: Message, device: CreatedDevice) -> str:
    device_id = {
        "known": device.id,
        "unknown": secrets.token_hex(12),
        "malformed": MALFORMED_IDS[len(message.payload) % len(MALFORMED_IDS)],
    }[message.target]
    return f"devices/{device_id}/{message.kind}"


@pytest.fixture
async def fuzz_device(api: Api) -> CreatedDevice:
    return await create_device(api, await register(api))


async def wait_for_tally(
    worker: IngestWorker, task: asyncio.Task[None], before: Tally, expected: Tally
) -> Tally:
    """The worker's counts since `before`, once they reach `expected` (or 30 s pass)."""
    async with asyncio.timeout(30):
        while True:
            if task.done():
                task.result()  # the worker stopped: show why
                raise AssertionError("the worker stopped without an error")
            taken = Tally.of(worker.stats) - before
            counts = (taken.received, sum(taken.dropped.values()), taken.stored)
            wanted = (expected.received, sum(expected.dropped.values()), expected.stored)
            if all(count >= want for count, want in zip(counts, wanted, strict=True)):
                return taken
            await asyncio.sleep(0.02)


@fuzz_settings(60, fixtures=True)
@given(batch=st.lists(messages(), min_size=2, max_size=12))
async def test_fuzz_worker_payloads_stored_or_counted_dropped(
    batch: list[Message],
    fuzz_worker: tuple[IngestWorker, asyncio.Task[None]],
    fuzz_publisher: aiomqtt.Client,
    fuzz_device: CreatedDevice,
) -> None:
    worker, task = fuzz_worker
    before = Tally.of(worker.stats)
    expected = expected_tally(batch)
    stored_before = await Reading.find(
        Reading.device_id == PydanticObjectId(fuzz_device.id)
    ).count()
    for message in batch:
        await fuzz_publisher.publish(topic(message, fuzz_device), message.payload, qos=1)
    taken = await wait_for_tally(worker, task, before, expected)
    assert taken.received == expected.received
    assert taken.dropped == expected.dropped
    assert taken.stored == expected.stored
    stored_after = await Reading.find(Reading.device_id == PydanticObjectId(fuzz_device.id)).count()
    assert stored_after - stored_before == expected.stored
    assert not task.done()
