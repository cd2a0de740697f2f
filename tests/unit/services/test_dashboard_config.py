"""The widget schema on its own: structure and paths, no database needed."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from services.dashboard_config import parse_config, serialized_size
from services.errors import BadInput
from tests.contract import ROOT

DEVICE = "0123456789abcdef01234567"


def gauge(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "g",
        "kind": "gauge",
        "devices": [DEVICE],
        "metrics": ["t"],
        "position": {"x": 0, "y": 0, "w": 1, "h": 1},
        "options": {"min": 0, "max": 1},
    }
    return body | changes


def parse(config: Any, *, max_bytes: int = 65536, max_points: int = 10_000) -> Any:
    return parse_config(config, max_bytes=max_bytes, max_points=max_points)


def failure(config: Any, **limits: int) -> str:
    with pytest.raises(BadInput) as caught:
        parse(config, **limits)
    return caught.value.message


def test_parse_config_minimal_widget_accepted() -> None:
    parsed = parse({"layout": {"columns": 1}, "widgets": [gauge()]})
    assert parsed.layout.columns == 1
    assert [w.id for w in parsed.widgets] == ["g"]


def test_parse_config_documented_example_accepted() -> None:
    text = (ROOT / "docs" / "dashboards.md").read_text()
    [example] = re.findall(r"```json\n(.*?)```", text, flags=re.DOTALL)
    parsed = parse(json.loads(example))
    assert [w.kind for w in parsed.widgets] == ["line_chart", "gauge", "table", "map"]


def test_parse_config_map_without_metrics_or_options_accepted() -> None:
    widget = gauge(kind="map")
    del widget["metrics"], widget["options"]
    assert parse({"layout": {"columns": 4}, "widgets": [widget]}).widgets[0].metrics == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"layout": {"columns": True}, "widgets": []}, "config.layout.columns: input should be"),
        ({"layout": {"columns": 2.0}, "widgets": []}, "config.layout.columns: input should be"),
        (
            {"layout": {"columns": 4}, "widgets": [gauge(options={"min": 0, "max": float("nan")})]},
            "config.widgets[0].options.max: input should be a finite number",
        ),
        (
            {"layout": {"columns": 4}, "widgets": [gauge(options={"min": 0, "max": 10**30})]},
            "config.widgets[0].options.max: input should be less than or equal to",
        ),
        (
            {
                "layout": {"columns": 4},
                "widgets": [gauge(position={"x": 0, "y": 999, "w": 1, "h": 2})],
            },
            "config.widgets[0].position.h: y + h must be at most 1000",
        ),
        (
            {"layout": {"columns": 4}, "widgets": [gauge(devices=[DEVICE, DEVICE])]},
            "config.widgets[0].devices[1]: listed twice",
        ),
        (
            {"layout": {"columns": 4}, "widgets": [gauge(title="a\u200bb")]},
            "config.widgets[0].title: must not contain control characters",
        ),
        (
            {
                "layout": {"columns": 4},
                "widgets": [gauge(kind="line_chart", options={"range": "1h", "bucket": "10s"})],
            },
            "config.widgets[0].options.bucket: gives 360 points over 1h; at most 100",
        ),
    ],
)
def test_parse_config_bad_value_names_path(config: Any, message: str) -> None:
    assert failure(config, max_points=100).startswith(message)


def test_parse_config_size_checked_before_structure() -> None:
    body = {"layout": {"columns": 4}, "widgets": [], "padding": "x" * 2000}
    size = len('{"layout":{"columns":4},"widgets":[],"padding":""}') + 2000
    assert (
        failure(body, max_bytes=1024) == f"config: must be at most 1024 bytes as JSON, not {size}"
    )


def test_serialized_size_counts_utf8_bytes() -> None:
    assert serialized_size({"a": "☃"}) == len('{"a":"☃"}'.encode())


def test_serialized_size_deep_nesting_rejected() -> None:
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(BadInput, match=r"^config: not a JSON value"):
        serialized_size(deep)
