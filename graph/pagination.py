"""Relay-style connections shared by every paginated list."""

# No `from __future__ import annotations`: strawberry resolves these generics at runtime.
from collections.abc import Callable
from typing import Generic, Self, TypeVar

import strawberry

from services.pagination import Page

T = TypeVar("T")
D = TypeVar("D")


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):  # noqa: UP046
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):  # noqa: UP046
    edges: list[Edge[T]]
    page_info: PageInfo
    total_count: int

    @classmethod
    def from_page(cls, page: Page[D], to_node: Callable[[D], T]) -> Self:
        edges = [
            Edge(cursor=cursor, node=to_node(item))
            for cursor, item in zip(page.cursors, page.items, strict=True)
        ]
        return cls(
            edges=edges,
            page_info=PageInfo(
                has_next_page=page.has_next_page,
                end_cursor=page.cursors[-1] if page.cursors else None,
            ),
            total_count=page.total_count,
        )
