"""The dashboard config schema (docs/dashboards.md): every failure names its JSON path."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from bson import ObjectId
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from models.accounts import User
from models.devices import Device
from services import access
from services.errors import BadInput

KINDS = ("line_chart", "gauge", "table", "map")
MAX_COLUMNS = 24
MAX_ROWS = 1000
MAX_WIDGETS = 50
MAX_DEVICES = 50
MAX_METRICS = 20
MAX_TITLE_LENGTH = 100
GAUGE_LIMIT = 1e15
RANGE_SECONDS = {"1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600, "7d": 7 * 24 * 3600}
BUCKET_SECONDS = {"10s": 10, "1m": 60, "15m": 15 * 60, "1h": 3600, "1d": 24 * 3600}

_METRIC = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_WIDGET_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _metric(value: str) -> str:
    if not _METRIC.fullmatch(value):
        raise PydanticCustomError("metric", "not a metric name (1..64 of A-Z a-z 0-9 _ . -)")
    return value


def _widget_id(value: str) -> str:
    if not _WIDGET_ID.fullmatch(value):
        raise PydanticCustomError("widget_id", "not a widget id (1..64 of A-Z a-z 0-9 _ -)")
    return value


def _device_id(value: str) -> str:
    if len(value) != 24 or not ObjectId.is_valid(value):
        raise PydanticCustomError("device_id", "not a valid device id")
    return value


def _title(value: str) -> str:
    if not value.strip() or len(value) > MAX_TITLE_LENGTH:
        raise PydanticCustomError("title", f"must be 1..{MAX_TITLE_LENGTH} characters")
    if any(unicodedata.category(ch) in {"Cc", "Cf"} for ch in value):
        raise PydanticCustomError("title", "must not contain control characters")
    return value


Metric = Annotated[str, AfterValidator(_metric)]
GaugeValue = Annotated[float, Field(ge=-GAUGE_LIMIT, le=GAUGE_LIMIT, allow_inf_nan=False)]


class _Strict(BaseModel):
    # Strict: JSON true is not 1, "3" is not 3; unknown keys are refused everywhere.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Layout(_Strict):
    columns: Annotated[int, Field(ge=1, le=MAX_COLUMNS)]


class Position(_Strict):
    x: Annotated[int, Field(ge=0, lt=MAX_COLUMNS)]
    y: Annotated[int, Field(ge=0, lt=MAX_ROWS)]
    w: Annotated[int, Field(ge=1, le=MAX_COLUMNS)]
    h: Annotated[int, Field(ge=1, le=MAX_ROWS)]


class LineChartOptions(_Strict):
    range: Literal["1h", "6h", "24h", "7d"]
    bucket: Literal["10s", "1m", "15m", "1h", "1d"]


class GaugeOptions(_Strict):
    min: GaugeValue
    max: GaugeValue


class TableOptions(_Strict):
    limit: Annotated[int, Field(ge=1, le=100)]


class MapOptions(_Strict):
    pass


class _Widget(_Strict):
    id: Annotated[str, AfterValidator(_widget_id)]
    title: Annotated[str, AfterValidator(_title)] | None = None
    devices: Annotated[
        list[Annotated[str, AfterValidator(_device_id)]],
        Field(min_length=1, max_length=MAX_DEVICES),
    ]
    metrics: Annotated[list[Metric], Field(min_length=1, max_length=MAX_METRICS)]
    position: Position


class LineChart(_Widget):
    kind: Literal["line_chart"]
    options: LineChartOptions


class Gauge(_Widget):
    kind: Literal["gauge"]
    options: GaugeOptions


class Table(_Widget):
    kind: Literal["table"]
    options: TableOptions


class MapWidget(_Widget):
    kind: Literal["map"]
    metrics: Annotated[list[Metric], Field(max_length=MAX_METRICS)] = []
    options: MapOptions | None = None


Widget = Annotated[LineChart | Gauge | Table | MapWidget, Field(discriminator="kind")]


class DashboardConfig(_Strict):
    layout: Layout
    widgets: Annotated[list[Widget], Field(max_length=MAX_WIDGETS)]


def _path(loc: Sequence[int | str]) -> str:
    path = "config"
    for index, part in enumerate(loc):
        # A tagged union puts the tag into the location: widgets[2].gauge.options -> drop it.
        if index == 2 and loc[0] == "widgets" and part in KINDS:
            continue
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _reason(error: ErrorDetails) -> tuple[str, str]:
    """(path, reason) of one pydantic error, in this module's words."""
    loc, kind, ctx = error["loc"], error["type"], error.get("ctx", {})
    kinds = ", ".join(KINDS)
    match kind:
        case "union_tag_invalid":
            return _path((*loc, "kind")), f"unknown widget kind; one of {kinds}"
        case "union_tag_not_found":
            return _path((*loc, "kind")), f"required; one of {kinds}"
        case "missing":
            return _path(loc), "required"
        case "extra_forbidden":
            return _path(loc), "unknown key"
        case "model_type" | "model_attributes_type" | "dict_type":
            return _path(loc), "must be an object"
        case "too_long":
            return _path(loc), f"at most {ctx['max_length']} items"
        case "too_short":
            return _path(loc), f"at least {ctx['min_length']} item(s)"
    message = error["msg"]
    return _path(loc), message[:1].lower() + message[1:]


def serialized_size(config: object) -> int:
    """Bytes of `config` as compact UTF-8 JSON."""
    try:
        text = json.dumps(config, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as err:
        raise BadInput("config", "not a JSON value") from err
    return len(text.encode())


def parse_config(config: object, *, max_bytes: int, max_points: int) -> DashboardConfig:
    """The config's structure, checked against the widget schema; devices not looked up."""
    size = serialized_size(config)
    if size > max_bytes:
        raise BadInput("config", f"must be at most {max_bytes} bytes as JSON, not {size}")
    try:
        parsed = DashboardConfig.model_validate(config)
    except ValidationError as err:
        raise BadInput(*_reason(err.errors(include_url=False)[0])) from None
    _check_widgets(parsed, max_points=max_points)
    return parsed


def _check_widgets(config: DashboardConfig, *, max_points: int) -> None:
    columns = config.layout.columns
    first_with_id: dict[str, int] = {}
    for i, widget in enumerate(config.widgets):
        at = f"config.widgets[{i}]"
        if widget.id in first_with_id:
            raise BadInput(f"{at}.id", f"duplicate of widgets[{first_with_id[widget.id]}].id")
        first_with_id[widget.id] = i
        position = widget.position
        if position.x >= columns:
            raise BadInput(f"{at}.position.x", f"must be less than layout.columns ({columns})")
        if position.x + position.w > columns:
            raise BadInput(f"{at}.position.w", f"x + w must be at most layout.columns ({columns})")
        if position.y + position.h > MAX_ROWS:
            raise BadInput(f"{at}.position.h", f"y + h must be at most {MAX_ROWS}")
        for name, values in (("devices", widget.devices), ("metrics", widget.metrics)):
            seen: set[str] = set()
            for j, value in enumerate(values):
                if value in seen:
                    raise BadInput(f"{at}.{name}[{j}]", "listed twice")
                seen.add(value)
        match widget:
            case Gauge(options=options) if options.min >= options.max:
                raise BadInput(f"{at}.options.max", "must be greater than options.min")
            case LineChart(options=options):
                span, step = RANGE_SECONDS[options.range], BUCKET_SECONDS[options.bucket]
                if step >= span:
                    raise BadInput(f"{at}.options.bucket", "must be shorter than options.range")
                if span // step > max_points:
                    raise BadInput(
                        f"{at}.options.bucket",
                        f"gives {span // step} points over {options.range}; at most {max_points}",
                    )


async def check_devices(viewer: User, config: DashboardConfig) -> None:
    """Every device the config names exists and is the viewer's (an ADMIN's: any one).

    One query for all of them; the first offender in document order is reported.
    """
    named: dict[ObjectId, str] = {}
    for i, widget in enumerate(config.widgets):
        for j, device_id in enumerate(widget.devices):
            named.setdefault(ObjectId(device_id), f"config.widgets[{i}].devices[{j}]")
    if not named:
        return
    query = {"_id": {"$in": list(named)}, **access.visible_filter(viewer, "device")}
    cursor = Device.get_pymongo_collection().find(query, {"_id": 1})
    found = {document["_id"] async for document in cursor}
    for object_id, path in named.items():
        if object_id not in found:
            # Missing and foreign alike: never reveal which.
            raise BadInput(path, "not a device you own")


async def validate_config(
    viewer: User, config: object, *, max_bytes: int, max_points: int
) -> dict[str, Any]:
    """`config` when it follows the widget schema and names only the viewer's devices.

    The config is kept as sent, not re-serialized, so it reads back exactly; the schema
    refuses unknown keys, so nothing unchecked is stored.
    """
    if not isinstance(config, dict):
        raise BadInput("config", "must be an object")
    await check_devices(viewer, parse_config(config, max_bytes=max_bytes, max_points=max_points))
    return config
