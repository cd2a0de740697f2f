"""GraphiQL answers a browser at GET /graphql; GET with a query still executes it."""

from __future__ import annotations

import httpx


async def test_serve_graphiql_to_browser(api_server: str) -> None:
    async with httpx.AsyncClient(base_url=api_server) as client:
        response = await client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "graphiql" in response.text.lower()


async def test_execute_query_over_get_without_token_unauthenticated(api_server: str) -> None:
    async with httpx.AsyncClient(base_url=api_server) as client:
        response = await client.get(
            "/graphql", params={"query": "{ me { id } }"}, headers={"Accept": "application/json"}
        )
    assert response.status_code == 200
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_refuse_mutation_over_get(api_server: str) -> None:
    async with httpx.AsyncClient(base_url=api_server) as client:
        response = await client.get(
            "/graphql",
            params={"query": "mutation { logout }"},
            headers={"Accept": "application/json"},
        )
    # A GET must not change anything (CSRF through links and image tags).
    assert response.status_code == 400
