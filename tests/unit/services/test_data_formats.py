"""The export encoders and the import's streamed parsing, without any service."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from core.settings import Settings
from ingest.payloads import MAX_PAYLOAD_BYTES
from services.errors import BadInput
from services.exports import encode_csv, encode_jsonl, iso, parse_format
from services.imports import lines_of, parse_csv, source_of
from services.retention import RetentionChange

AT = datetime(2025, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
DOC = {
    "timestamp": AT,
    "values": [
        {"metric": "temperature", "value": 21.5, "unit": 'de"g,C'},
        {"metric": "on", "value": 1.0, "unit": None},
    ],
}


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def collect(lines: AsyncIterator[bytes]) -> list[bytes]:
    return [line async for line in lines]


def test_encode_csv_quotes_units_and_keeps_floats_exact() -> None:
    text = encode_csv([DOC], header=True).decode()
    assert list(csv.reader(io.StringIO(text))) == [
        ["timestamp", "metric", "value", "unit"],
        ["2025-03-01T12:00:00.123Z", "temperature", "21.5", 'de"g,C'],
        ["2025-03-01T12:00:00.123Z", "on", "1.0", ""],
    ]


def test_encode_jsonl_one_telemetry_object_per_line() -> None:
    assert encode_jsonl([DOC, DOC]).count(b"\n") == 2
    assert encode_jsonl([DOC]).startswith(
        b'{"timestamp":"2025-03-01T12:00:00.123Z","temperature":{"value":21.5,"unit":"de\\"g,C"},"on":1.0}'
    )


def test_iso_naive_is_utc() -> None:
    assert iso(AT.replace(tzinfo=None)) == "2025-03-01T12:00:00.123Z"


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 10_000])
async def test_lines_of_any_chunking_same_lines(size: int) -> None:
    data = b"a,1\r\n\n  \nbb,2\nccc,3"
    counts: Counter[str] = Counter()
    assert await collect(lines_of(chunks_of(data, size), counts)) == [b"a,1", b"bb,2", b"ccc,3"]
    assert counts == Counter()


@pytest.mark.parametrize("size", [1000, 70_000])
async def test_lines_of_overlong_line_counted_skipped(size: int) -> None:
    data = (
        b"first\n" + b"x" * (MAX_PAYLOAD_BYTES + 1) + b"\nlast\n" + b"y" * (MAX_PAYLOAD_BYTES + 5)
    )
    counts: Counter[str] = Counter()
    assert await collect(lines_of(chunks_of(data, size), counts)) == [b"first", b"last"]
    assert counts == Counter({"too_large": 2})


async def test_parse_csv_groups_rows_of_one_time() -> None:
    data = (
        b"timestamp,metric,value,unit\n"
        b"2025-03-01T00:00:00Z,a,1,\n2025-03-01T00:00:00Z,b,2,V\n"
        b"2025-03-01T00:00:00Z,a,3,\n"  # a again: a reading of its own
        b"2025-03-01T00:00:10Z,a,4,\n"
    )
    counts: Counter[str] = Counter()
    readings = [r async for r in parse_csv(lines_of(chunks_of(data, 5), counts), AT, counts)]
    assert [r.values for r in readings] == [
        (("a", 1.0, None), ("b", 2.0, "V")),
        (("a", 3.0, None),),
        (("a", 4.0, None),),
    ]
    assert counts == Counter()


async def test_parse_csv_needs_header() -> None:
    counts: Counter[str] = Counter()
    with pytest.raises(BadInput, match="header"):
        await collect(parse_csv(chunks_of(b"2025-03-01T00:00:00Z,a,1,", 100), AT, counts))  # type: ignore[arg-type]


def test_source_of_same_reading_same_key_other_value_other_key() -> None:
    from bson import ObjectId

    from ingest.payloads import ParsedReading

    device = ObjectId()
    one = ParsedReading(timestamp=AT, values=(("a", 1.0, None),))
    assert source_of(device, one) == source_of(device, ParsedReading(AT, (("a", 1.0, None),)))
    assert source_of(device, one) != source_of(device, ParsedReading(AT, (("a", 1.5, None),)))
    assert source_of(device, one) != source_of(ObjectId(), one)


@pytest.mark.parametrize("value", ["CSV", "jsonl", None])
def test_parse_format_known(value: str | None) -> None:
    assert parse_format(value) in ("csv", "jsonl")


def test_retention_change_bounds() -> None:
    settings = Settings(_env_file=None, reading_retention_days=30)  # type: ignore[call-arg]
    assert RetentionChange.checked(None, settings).days is None
    assert RetentionChange.checked(30, settings).days == 30
    for days in (0, 31):
        with pytest.raises(BadInput, match="retentionDays"):
            RetentionChange.checked(days, settings)
