"""One parsed document per distinct query text, shared by every operation that sends it.

A thousand clients subscribing with the same document each kept their own AST (with
its tokens) for as long as the subscription lived, ~5.5 KiB apiece. graphql-core never
changes a DocumentNode, so operations can share one. Unlike strawberry's ParserCache,
a text that does not parse is left to strawberry, which parses it again and reports
the error inside the operation (with its code and metrics).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from graphql import DocumentNode, GraphQLError, parse
from strawberry.extensions import SchemaExtension

from graph.errors import QUERY_TOO_COMPLEX

_DOCUMENTS = 256


@lru_cache(maxsize=_DOCUMENTS)
def _parse(query: str, options: tuple[tuple[str, Any], ...]) -> DocumentNode:
    return parse(query, **dict(options))


class SharedDocuments(SchemaExtension):
    """Sets the operation's document from the cache before strawberry would parse it."""

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.graphql_document is None and context.query:
            try:
                # The parse options carry the token limit (MaxTokensLimiter).
                options = tuple(sorted(context.parse_options.items()))
                context.graphql_document = _parse(context.query, options)
            except (GraphQLError, TypeError):
                pass  # strawberry's own parse reports it
        yield


def query_too_long(query: str | None, max_chars: int) -> GraphQLError | None:
    """The refusal of a query text over `max_chars`, checked before anything parses or
    keeps it: a long comment or string is a few tokens, and a cached key ~1 MB apiece."""
    if query is None or len(query) <= max_chars:
        return None
    return GraphQLError(
        f"The query text has {len(query)} characters; the limit is {max_chars}.",
        extensions={"code": QUERY_TOO_COMPLEX},
    )


def parsed_documents() -> Any:
    """The cache's statistics (hits, misses, currsize): for tests and diagnostics."""
    return _parse.cache_info()
