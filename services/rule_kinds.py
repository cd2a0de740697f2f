"""Alert rule kinds, each defined once: its settings, their checks, how a worker evaluates it.

Every layer reads RULE_KINDS: the services check a rule's settings with its kind's
`check` (services/alert_rules.py), the worker sorts the rules it holds by `evaluation`
(ingest/alert_rules.py) and evaluates them with ingest/thresholds.py, the documents and
the GraphQL enum share models.alerts.RuleKind. In Python a setting has one name, the
stored one (`min_value`, `max_value`, ...); GraphQL names them as the contract does
(`min`, `max`, `seconds`), mapped only in graph/alerts. ANOMALY alerts have no rule:
the worker's detector raises them (ingest/anomaly.py, settings ANOMALY_*).
Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Final, Literal

from models.alerts import RuleKind, Severity
from services.errors import BadInput
from services.validation import clean_text

MAX_METRIC_LENGTH = 100
MAX_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleFields:
    """A rule's settings, checked together (min against max, hysteresis against both)."""

    kind: RuleKind
    metric: str | None = None
    min_value: float | None = None
    max_value: float | None = None
    hysteresis: float = 0.0
    duration_seconds: int = 0
    no_data_seconds: int | None = None
    severity: Severity = Severity.WARNING

    def checked(self) -> RuleFields:
        """These fields, cleaned; BadInput naming the first field that is wrong."""
        return RULE_KINDS[self.kind].check(self)


# BadInput names the fields as the API does (contract/operations.graphql).


def _checked_threshold(fields: RuleFields) -> RuleFields:
    low, high = fields.min_value, fields.max_value
    if fields.metric is None:
        raise BadInput("metric", "is required")
    metric = clean_text(fields.metric, field="metric", max_length=MAX_METRIC_LENGTH)
    for name, bound in (("min", low), ("max", high)):
        if bound is not None and not math.isfinite(bound):
            raise BadInput(name, "must be a finite number")
    if low is None and high is None:
        raise BadInput("min", "at least one of min and max is required")
    if low is not None and high is not None and low > high:
        raise BadInput("min", "must not be greater than max")
    if not math.isfinite(fields.hysteresis) or fields.hysteresis < 0:
        raise BadInput("hysteresis", "must be a finite number >= 0")
    if low is not None and high is not None and 2 * fields.hysteresis > high - low:
        # [min + h, max - h] would be empty: the alert could never clear itself.
        raise BadInput("hysteresis", "must be at most half of max - min")
    if not 0 <= fields.duration_seconds <= MAX_SECONDS:
        raise BadInput("durationSeconds", f"must be 0 to {MAX_SECONDS}")
    if fields.no_data_seconds is not None:
        raise BadInput("noDataSeconds", "applies to no-data rules only")
    return replace(fields, metric=metric)


def _checked_no_data(fields: RuleFields) -> RuleFields:
    if fields.metric is not None:
        raise BadInput("metric", "a no-data rule watches the whole device")
    if fields.min_value is not None or fields.max_value is not None:
        raise BadInput("min", "a no-data rule has no min or max")
    if fields.hysteresis or fields.duration_seconds:
        raise BadInput("hysteresis", "a no-data rule has no hysteresis or duration")
    if fields.no_data_seconds is None or not 1 <= fields.no_data_seconds <= MAX_SECONDS:
        raise BadInput("noDataSeconds", f"must be 1 to {MAX_SECONDS}")
    return fields


@dataclass(frozen=True, slots=True)
class RuleKindDefinition:
    kind: RuleKind
    # The RuleFields settings it uses (kind and severity aside); `check` refuses the rest.
    fields: frozenset[str]
    check: Callable[[RuleFields], RuleFields]
    # "reading": each reading of `metric` goes through ingest.thresholds.step.
    # "silence": ingest.thresholds.silent on a timer raises, any message clears.
    evaluation: Literal["reading", "silence"]


THRESHOLD: Final = RuleKindDefinition(
    RuleKind.THRESHOLD,
    frozenset({"metric", "min_value", "max_value", "hysteresis", "duration_seconds"}),
    _checked_threshold,
    "reading",
)
NO_DATA: Final = RuleKindDefinition(
    RuleKind.NO_DATA, frozenset({"no_data_seconds"}), _checked_no_data, "silence"
)

RULE_KINDS: Final[Mapping[str, RuleKindDefinition]] = {
    definition.kind: definition for definition in (THRESHOLD, NO_DATA)
}
# Stored rules without a kind predate no-data rules.
DEFAULT_KIND: Final = RuleKind.THRESHOLD
if set(RULE_KINDS) != set(RuleKind):
    raise RuntimeError("every RuleKind needs a definition in services.rule_kinds")
