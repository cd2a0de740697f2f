"""application/graphql-response+json beside application/json (GraphQL over HTTP).

graphql-http's audits check the same against the spec (tests/system/browser); these pin the
behaviour without Node, and what old clients keep.
"""

from __future__ import annotations

import httpx
import pytest

from api.graphql_response import GRAPHQL_RESPONSE_JSON, prefers_graphql_response_json
from tests.client import Api
from tests.factories import register

PARSE_ERROR = {"query": "{"}
INVALID = {"query": "{ noSuchField }"}
UNCOERCIBLE = {"query": "query ($id: ID!) { device(id: $id) { id } }", "variables": {}}
FIELD_ERROR = {"query": "{ me { email } }"}  # no token: me (non-null) fails, data null


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, False),
        ("", False),
        ("*/*", False),
        ("application/json", False),
        ("application/json, multipart/mixed", False),
        ("text/html,application/xhtml+xml,*/*;q=0.8", False),
        (GRAPHQL_RESPONSE_JSON, True),
        (f"{GRAPHQL_RESPONSE_JSON}, application/json", True),
        (f"application/json, {GRAPHQL_RESPONSE_JSON}", True),
        (f"{GRAPHQL_RESPONSE_JSON};q=0.9, application/json", False),
        # */* at 1 covers application/json at 1: preferred to the new type at 0.9.
        (f"{GRAPHQL_RESPONSE_JSON};q=0.9, */*", False),
        (f"{GRAPHQL_RESPONSE_JSON}, */*;q=0.8", True),
        (f"{GRAPHQL_RESPONSE_JSON};q=0.5, application/json;q=0.9, */*", False),
        (f"{GRAPHQL_RESPONSE_JSON};q=0, application/json", False),
        (f"{GRAPHQL_RESPONSE_JSON};q=nonsense", False),
        ("Application/GraphQL-Response+JSON", True),
    ],
)
def test_prefers_graphql_response_json(accept: str | None, expected: bool) -> None:
    assert prefers_graphql_response_json(accept) is expected


async def post(api_server: str, body: dict[str, object], accept: str | None) -> httpx.Response:
    headers = {"Accept": accept} if accept else {}
    async with httpx.AsyncClient(base_url=api_server) as client:
        return await client.post("/graphql", json=body, headers=headers)


@pytest.mark.parametrize("body", [PARSE_ERROR, INVALID, UNCOERCIBLE], ids=str)
async def test_request_error_is_400_without_data(api_server: str, body: dict[str, object]) -> None:
    response = await post(api_server, body, GRAPHQL_RESPONSE_JSON)
    assert response.status_code == 400
    assert response.headers["content-type"] == GRAPHQL_RESPONSE_JSON
    payload = response.json()
    assert "data" not in payload
    assert payload["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize("accept", [None, "*/*", "application/json"])
@pytest.mark.parametrize("body", [PARSE_ERROR, INVALID, UNCOERCIBLE], ids=str)
async def test_request_error_to_json_client_stays_200_with_null_data(
    api_server: str, body: dict[str, object], accept: str | None
) -> None:
    response = await post(api_server, body, accept)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json()["data"] is None


async def test_field_error_keeps_data_and_200(api_server: str) -> None:
    response = await post(api_server, FIELD_ERROR, GRAPHQL_RESPONSE_JSON)
    assert response.status_code == 200
    assert response.headers["content-type"] == GRAPHQL_RESPONSE_JSON
    payload = response.json()
    assert payload["data"] is None
    assert [e["extensions"]["code"] for e in payload["errors"]] == ["UNAUTHENTICATED"]


async def test_success_in_graphql_response_json(api: Api, api_server: str) -> None:
    session = await register(api)
    async with httpx.AsyncClient(base_url=api_server) as client:
        response = await client.post(
            "/graphql",
            json={"query": "{ me { email } }"},
            headers={
                "Accept": GRAPHQL_RESPONSE_JSON,
                "Authorization": f"Bearer {session.access_token}",
            },
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == GRAPHQL_RESPONSE_JSON
    assert response.json() == {"data": {"me": {"email": session.email}}}


async def test_get_query_in_graphql_response_json(api_server: str) -> None:
    async with httpx.AsyncClient(base_url=api_server) as client:
        ok = await client.get(
            "/graphql",
            params={"query": "{ __typename }"},
            headers={"Accept": GRAPHQL_RESPONSE_JSON},
        )
        bad = await client.get(
            "/graphql", params={"query": "{"}, headers={"Accept": GRAPHQL_RESPONSE_JSON}
        )
    assert (ok.status_code, ok.headers["content-type"]) == (200, GRAPHQL_RESPONSE_JSON)
    assert ok.json() == {"data": {"__typename": "Query"}}
    assert (bad.status_code, "data" in bad.json()) == (400, False)
