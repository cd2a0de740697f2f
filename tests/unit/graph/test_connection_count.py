"""graph.pagination.Connection: `totalCount` is counted when a query selects it, only then."""

from __future__ import annotations

import strawberry

from graph.pagination import Connection
from services.pagination import Page


@strawberry.type
class Item:
    name: str


def schema_counting(calls: list[int]) -> strawberry.Schema:
    async def count() -> int:
        calls.append(1)
        return 7

    @strawberry.type
    class Query:
        @strawberry.field
        def items(self) -> Connection[Item]:
            page = Page(items=["a", "b"], cursors=["c1", "c2"], has_next_page=True, count=count)
            return Connection[Item].from_page(page, lambda name: Item(name=name))

    return strawberry.Schema(query=Query)


async def test_total_count_counted_when_selected() -> None:
    calls: list[int] = []
    result = await schema_counting(calls).execute(
        "{ items { edges { node { name } } totalCount } }"
    )
    assert result.errors is None
    assert result.data == {
        "items": {"edges": [{"node": {"name": "a"}}, {"node": {"name": "b"}}], "totalCount": 7}
    }
    assert calls == [1]


async def test_page_without_total_count_counts_nothing() -> None:
    calls: list[int] = []
    result = await schema_counting(calls).execute(
        "{ items { edges { cursor } pageInfo { hasNextPage endCursor } } }"
    )
    assert result.errors is None
    assert result.data == {
        "items": {
            "edges": [{"cursor": "c1"}, {"cursor": "c2"}],
            "pageInfo": {"hasNextPage": True, "endCursor": "c2"},
        }
    }
    assert calls == []
