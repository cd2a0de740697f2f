"""@shareable (live.sharing) agrees with the types themselves: a type whose value could
depend on the viewer is refused, and every viewer-independent type a subscription
returns is marked (else its subscribers would each execute it for nothing)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import strawberry
from strawberry.permission import BasePermission
from strawberry.types.base import get_object_definition, has_object_definition

from graph.schema import Mutation, Query, Subscription
from live.sharing import is_shareable, shareable


def _inner(type_: Any) -> Any:
    while hasattr(type_, "of_type"):  # lists, optionals
        type_ = type_.of_type
    return type_


def _plain_fields(cls: type) -> bool:
    definition = get_object_definition(cls, strict=True)
    return not definition.is_interface and all(
        field.base_resolver is None
        and not field.arguments
        and not field.permission_classes
        and not field.directives
        for field in definition.fields
    )


def _reachable(cls: type) -> Iterator[type]:
    """`cls` and every object type its fields lead to."""
    seen: set[type] = set()
    pending = [cls]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        yield current
        for field in get_object_definition(current, strict=True).fields:
            inner = _inner(field.type)
            if has_object_definition(inner):
                pending.append(inner)


def viewer_independent(cls: type) -> bool:
    """Every field of `cls`, and of every type below it, a plain value: nothing that
    resolves, takes arguments or checks permissions (which could read the viewer)."""
    return all(_plain_fields(each) for each in _reachable(cls))


def _subscription_types() -> set[type]:
    roots = [_inner(f.type) for f in get_object_definition(Subscription, strict=True).fields]
    return {each for root in roots for each in _reachable(root)}


def test_mark_shareable_every_viewer_independent_subscription_type() -> None:
    found = {
        cls.__name__: (is_shareable(cls), viewer_independent(cls)) for cls in _subscription_types()
    }
    assert {"Reading", "MetricValue", "DeviceStatusUpdate"} <= set(found)
    wrong = {name: marks for name, marks in found.items() if marks[0] != marks[1]}
    assert not wrong, f"(marked, viewer-independent) disagree: {wrong}"


def test_keep_shareable_types_viewer_independent_whole_schema() -> None:
    every = {each for root in (Query, Mutation, Subscription) for each in _reachable(root)}
    marked = [cls.__name__ for cls in every if is_shareable(cls)]
    assert marked
    dependent = [cls.__name__ for cls in every if is_shareable(cls) and not viewer_independent(cls)]
    assert not dependent, f"marked @shareable, yet may depend on the viewer: {dependent}"


class _Anyone(BasePermission):
    message = "never refused"

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        return True


def test_refuse_shareable_type_resolved_field() -> None:
    @strawberry.type
    class Viewed:
        @strawberry.field
        def mine(self, info: strawberry.Info) -> bool:
            return info.context is not None

    with pytest.raises(TypeError, match=r"Viewed\.mine"):
        shareable(Viewed)
    assert not is_shareable(Viewed)


def test_refuse_shareable_type_field_with_permission() -> None:
    @strawberry.type
    class Guarded:
        secret: str = strawberry.field(permission_classes=[_Anyone])

    with pytest.raises(TypeError, match=r"Guarded\.secret"):
        shareable(Guarded)


def test_mark_shareable_type_not_its_subclass() -> None:
    @shareable
    @strawberry.type
    class Plain:
        value: int

    @strawberry.type
    class Extended(Plain):
        @strawberry.field
        def viewer(self, info: strawberry.Info) -> str:
            return str(info.context)

    assert is_shareable(Plain)
    assert not is_shareable(Extended)
