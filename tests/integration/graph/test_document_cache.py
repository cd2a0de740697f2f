"""Parsed documents shared between operations (graph.document_cache)."""

from __future__ import annotations

from core.settings import Settings
from graph.document_cache import parsed_documents
from tests.client import Api
from tests.factories import register


async def test_share_document_same_query_text(api: Api) -> None:
    session = await register(api)
    query = "{ me { email } }  # test_share_document_same_query_text"
    before = parsed_documents()
    first = await api.execute(query, token=session.access_token)
    second = await api.execute(query, token=session.access_token)
    assert first.data == second.data == {"me": {"email": session.email}}
    after = parsed_documents()
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 1)


async def test_refuse_unparsable_query_coded_not_cached(api: Api) -> None:
    before = parsed_documents()
    for _ in range(2):
        result = await api.execute("{ me { email }  # test_refuse_unparsable_query")
        assert result.code == "BAD_USER_INPUT"
        assert "Syntax Error" in result.message
    assert parsed_documents().currsize == before.currsize


async def test_refuse_token_bomb_through_cache(api: Api, settings: Settings) -> None:
    query = "{ me { " + "id " * settings.graphql_max_tokens + "} }"
    for _ in range(2):
        result = await api.execute(query)
        assert result.code == "QUERY_TOO_COMPLEX"
        assert "tokens" in result.message
