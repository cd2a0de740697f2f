"""A small GraphQL-over-HTTP client for the tests."""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any, Self

import httpx


class GraphQLFailure(AssertionError):
    """The operation answered with errors where data was expected."""


class Result:
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body

    @property
    def data(self) -> dict[str, Any]:
        if self.body.get("errors"):
            raise GraphQLFailure(self.body["errors"])
        return self.body["data"]  # type: ignore[no-any-return]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return self.body.get("errors") or []

    @property
    def codes(self) -> list[str]:
        return [error.get("extensions", {}).get("code") for error in self.errors]

    @property
    def code(self) -> str:
        codes = self.codes
        assert len(codes) == 1, f"expected one error, got {self.errors}"
        return codes[0]

    @property
    def message(self) -> str:
        return str(self.errors[0]["message"])


class Api:
    """POSTs operations to /graphql, optionally with a bearer token."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.AsyncClient(base_url=base_url, timeout=30)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.http.aclose()

    async def execute(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        operation_name: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Result:
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        payload: dict[str, Any] = {"query": query, "variables": variables or {}}
        if operation_name:
            payload["operationName"] = operation_name
        response = await self.http.post("/graphql", json=payload, headers=all_headers)
        return Result(response.status_code, response.json())

    async def execute_escaped(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> Result:
        """`execute` with the body's JSON escaped to ASCII, as some clients send it: it
        carries what UTF-8 cannot, e.g. a lone surrogate ("\\ud800")."""
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        body = json.dumps({"query": query, "variables": variables or {}})
        response = await self.http.post("/graphql", content=body, headers=headers)
        return Result(response.status_code, response.json())
