"""Relay-style connections shared by every paginated list."""

# No `from __future__ import annotations`: strawberry resolves these generics at runtime.
from collections.abc import Awaitable, Callable
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
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    # Counted only when a query selects it (services/pagination.Page.count).
    @strawberry.field
    async def total_count(self) -> int:
        return await self.count()

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
            count=page.count,
        )
