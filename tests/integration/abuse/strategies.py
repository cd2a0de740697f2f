"""Hypothesis strategies for device payloads, and the suite's reproducible settings."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from ingest.payloads import MAX_FUTURE, MAX_UNIT_LENGTH, ParsedReading

# The arrival time the in-process parser tests read payloads at.
ARRIVED = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


# Strings as devices write them, and the awkward ones: lone surrogates (a JSON text may
# escape one, "\\ud800"), control and private-use characters.
AWKWARD = st.text(st.characters(categories=["Cs", "Cc", "Co"]), min_size=1, max_size=3)
STRINGS = st.one_of(st.text(max_size=8), AWKWARD)
METRIC_NAMES = st.text(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-", min_size=1, max_size=64
)
# Names that look like metrics, some breaking the rule (space, "$", too long, empty).
FIELD_NAMES = st.one_of(
    METRIC_NAMES,
    st.sampled_from(["timestamp", "ts", "device_id", "jwt_token", "$where", "a b", "", "m" * 65]),
    STRINGS,
)
TIMEZONES = st.one_of(
    st.just(UTC),
    st.builds(
        lambda minutes: timezone(timedelta(minutes=minutes)),
        st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59),
    ),
)
# Where date arithmetic breaks: the ends of the calendar, shifted by a zone.
EDGE_TIMESTAMPS = st.sampled_from(
    [
        "0001-01-01T00:00:00+01:00",
        "0001-01-01 00:00:00",
        "9999-12-31T23:59:59.999999-00:01",
        "9999-12-31T23:59:59Z",
        "1969-12-31T23:59:59.999Z",
        "2026-11-23T12:05:00.001Z",
        "2026-11-23T12:04:59.999+00:00",
        "",
        " ",
        "2026-02-30T00:00:00",
    ]
)


def fuzz_settings(max_examples: int, *, fixtures: bool = False) -> settings:
    """Reproducible (derandomized, no example database), no deadline: CI sees one run.
    FUZZ_SCALE multiplies the number of examples (a longer, still reproducible run).

    With `fixtures`, the function-scoped fixtures' health check is off: those tests
    deliberately share one running service (and its state) among all examples.
    """
    suppressed = [HealthCheck.too_slow]
    # FUZZ_SCALE=20: the soak variant, twenty times the examples (README).
    max_examples *= int(os.environ.get("FUZZ_SCALE", "1"))
    if fixtures:
        suppressed.append(HealthCheck.function_scoped_fixture)
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=suppressed,
    )


def iso_timestamps() -> st.SearchStrategy[str]:
    """ISO 8601 texts: zoned or not, any year, the calendar's ends, and garbage."""
    zoned = st.datetimes(timezones=TIMEZONES).map(lambda when: when.isoformat())
    naive = st.datetimes().map(lambda when: when.isoformat(sep=" "))
    return st.one_of(EDGE_TIMESTAMPS, zoned, naive, naive.map(lambda text: text + "Z"), STRINGS)


def epoch_millis() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.integers(min_value=-(10**17), max_value=10**17),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
        STRINGS,
    )


def metric_values() -> st.SearchStrategy[Any]:
    """What a device may put under a metric name, valid or not."""
    numbers = st.one_of(
        st.integers(min_value=-(2**63), max_value=2**63),
        st.integers(),  # arbitrarily large: overflows a float
        st.floats(),  # NaN and infinities too (written as NaN / Infinity)
        st.booleans(),
    )
    units = st.one_of(st.none(), st.integers(), STRINGS, st.text(min_size=30, max_size=40))
    wrapped = st.fixed_dictionaries(
        {"value": st.one_of(numbers, st.none(), STRINGS)},
        optional={"unit": units, "extra": st.integers()},
    )
    return st.one_of(numbers, wrapped, st.none(), STRINGS, st.lists(numbers, max_size=3))


def reading_objects() -> st.SearchStrategy[Any]:
    time_fields = st.fixed_dictionaries(
        {}, optional={"timestamp": iso_timestamps(), "ts": epoch_millis()}
    )
    metrics = st.dictionaries(FIELD_NAMES, metric_values(), max_size=6)
    return st.builds(lambda m, t: {**m, **t}, metrics, time_fields)


def json_documents() -> st.SearchStrategy[Any]:
    """A reading, an array of them, or any other JSON value."""
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), STRINGS)
    anything = st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=4), children, max_size=4)
        ),
        max_leaves=8,
    )
    return st.one_of(
        reading_objects(),
        st.lists(reading_objects(), max_size=4),
        st.lists(st.one_of(reading_objects(), anything), max_size=3),
        anything,
    )


def encode(document: Any) -> bytes:
    """As a device would send it; NaN and Infinity written as the literals json allows."""
    return json.dumps(document, allow_nan=True).encode()


def telemetry_payloads() -> st.SearchStrategy[bytes]:
    """Bytes a device might publish: JSON documents (valid or not as readings), and noise."""
    return st.one_of(json_documents().map(encode), st.binary(max_size=64))


def valid_telemetry_payloads() -> st.SearchStrategy[bytes]:
    """Payloads the contract accepts: one reading object or an array of them."""
    readings = st.lists(valid_reading(), min_size=1, max_size=3)
    return st.one_of(
        readings.map(lambda pairs: encode(pairs[0][0])),
        readings.map(lambda pairs: encode([reading for reading, _ in pairs])),
    )


def status_payloads() -> st.SearchStrategy[bytes]:
    words = st.sampled_from([b"online", b"offline", b" online\n", b'"offline"', b"ONLINE", b""])
    documents = st.one_of(
        st.fixed_dictionaries({"online": st.one_of(st.booleans(), st.integers(), STRINGS)}),
        st.one_of(st.none(), st.booleans(), st.integers(), STRINGS, st.lists(STRINGS)),
    ).map(encode)
    return st.one_of(words, documents, st.binary(max_size=64))


# ------------------------------------------------------------ valid readings, and how to read them

# Built once: a strategy made inside a composite is validated again on every draw.
VALID_NUMBERS = st.one_of(
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)
VALID_UNITS = st.one_of(st.none(), st.text(max_size=2 * MAX_UNIT_LENGTH))
TIME_FORMS = st.sampled_from(["none", "iso", "naive", "ts"])
# Up to just under the five minutes ahead that the contract allows.
PAST_INSTANTS = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=(ARRIVED + MAX_FUTURE - timedelta(milliseconds=1)).replace(tzinfo=None),
    timezones=st.just(UTC),
)
NAME_LISTS = st.lists(
    METRIC_NAMES.filter(lambda name: name not in {"timestamp", "ts"}),
    min_size=1,
    max_size=6,
    unique=True,
)
# Strings, lists and objects without "value" are ignored, whatever their name.
IGNORED_FIELDS = st.dictionaries(
    STRINGS,
    st.one_of(
        STRINGS,
        st.lists(st.integers(), max_size=3),
        st.none(),
        st.fixed_dictionaries({"unit": st.text(max_size=3)}),
    ),
    max_size=4,
)


@st.composite
def metric_and_expectation(draw: st.DrawFn) -> tuple[Any, float, str | None]:
    """A valid metric as written, with the value and unit it must be read as."""
    number = draw(VALID_NUMBERS)
    value = float(number)
    if not draw(st.booleans()):
        return number, value, None
    unit = draw(VALID_UNITS)
    written = {"value": number} if unit is None else {"value": number, "unit": unit}
    return written, value, (unit[:MAX_UNIT_LENGTH] or None) if unit is not None else None


@st.composite
def time_and_expectation(draw: st.DrawFn) -> tuple[dict[str, Any], datetime]:
    """An optional `timestamp` or `ts` field, and the instant it must be read as."""
    form = draw(TIME_FORMS)
    if form == "none":
        return {}, ARRIVED
    when = draw(PAST_INSTANTS)
    expected = when.replace(microsecond=when.microsecond // 1000 * 1000)
    if form == "ts":
        millis = (expected - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
        return {"ts": millis}, expected
    if form == "naive":
        return {"timestamp": when.replace(tzinfo=None).isoformat(sep=" ")}, expected
    return {"timestamp": when.astimezone(draw(TIMEZONES)).isoformat()}, expected


@st.composite
def valid_reading(draw: st.DrawFn) -> tuple[dict[str, Any], ParsedReading]:
    names = draw(NAME_LISTS)
    metrics = {name: draw(metric_and_expectation()) for name in names}
    ignored = {
        key: value
        for key, value in draw(IGNORED_FIELDS).items()
        if key not in metrics and key not in {"timestamp", "ts"}
    }
    time_field, expected_time = draw(time_and_expectation())
    fields = [(name, written) for name, (written, _, _) in metrics.items()]
    fields += list(ignored.items()) + list(time_field.items())
    ordered = draw(st.permutations(fields))
    reading = dict(ordered)
    values = tuple(
        (name, metrics[name][1], metrics[name][2]) for name, _ in ordered if name in metrics
    )
    return reading, ParsedReading(timestamp=expected_time, values=values)
