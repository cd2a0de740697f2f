"""graph.schema drives the operation's hooks itself: the same order and outcomes as strawberry."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator

import pytest
import strawberry
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionResult

from graph.schema import Schema

events: list[str] = []


class Outer(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        events.append("outer in")
        try:
            yield
        except BaseException as err:
            events.append(f"outer saw {type(err).__name__}")
            raise
        finally:
            events.append("outer out")


class Inner(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        events.append("inner in")
        yield
        events.append("inner out")


class FailingOnExit(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        yield
        raise ValueError("hook failed")


class Swallowing(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        try:
            yield
        except ValueError:
            events.append("swallowed")


@strawberry.type
class Query:
    @strawberry.field
    def hello(self) -> str:
        events.append("resolved")
        return "hi"


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def ticks(self) -> AsyncGenerator[int]:
        try:
            for tick in range(3):
                events.append(f"tick {tick}")
                yield tick
        finally:
            events.append("ticks closed")


SCHEMAS = [strawberry.Schema, Schema]


async def run_query(schema_class: type[strawberry.Schema], *extensions: type) -> list[str]:
    events.clear()
    schema = schema_class(query=Query, extensions=list(extensions))
    try:
        result = await schema.execute("{ hello }")
        events.append(f"data {result.data}")
    except Exception as err:  # noqa: BLE001 - the outcome is what is compared
        events.append(f"raised {type(err).__name__}: {err}")
    return list(events)


@pytest.mark.parametrize(
    "extensions",
    [
        (Outer, Inner),
        (Outer, FailingOnExit),
        (Outer, Swallowing, FailingOnExit),
        (Swallowing, Outer, FailingOnExit),
    ],
)
async def test_run_operation_hooks_like_strawberry(extensions: tuple[type, ...]) -> None:
    expected = await run_query(strawberry.Schema, *extensions)
    assert await run_query(Schema, *extensions) == expected


async def test_run_operation_hooks_order_nested() -> None:
    assert await run_query(Schema, Outer, Inner) == [
        "outer in",
        "inner in",
        "resolved",
        "inner out",
        "outer out",
        "data {'hello': 'hi'}",
    ]


async def stream_two_and_close(schema_class: type[strawberry.Schema]) -> list[str]:
    events.clear()
    schema = schema_class(query=Query, subscription=Subscription, extensions=[Outer, Inner])
    stream = await schema.subscribe("subscription { ticks }")
    assert not isinstance(stream, ExecutionResult)
    for _ in range(2):
        result = await anext(stream)
        events.append(f"data {result.data}")
    await stream.aclose()
    return list(events)


async def test_close_subscription_operation_hooks_like_strawberry() -> None:
    expected = await stream_two_and_close(strawberry.Schema)
    assert "outer saw GeneratorExit" in expected
    assert await stream_two_and_close(Schema) == expected
