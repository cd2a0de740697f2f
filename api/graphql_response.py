"""application/graphql-response+json, the GraphQL-over-HTTP media type, beside application/json.

A client that prefers application/graphql-response+json in its Accept header gets that
content type, and the spec's status codes with it: a request error (a document that does
not parse or validate, variables that do not coerce: nothing was executed) answers 400
with no `data` entry at all, and 500 when the server is at fault (INTERNAL). A response
that has `data`, even null, is 200 as before.

Every other client (application/json, */*, no Accept) keeps application/json: 200 with
`"data": null` beside the errors, which clients written before the spec expect.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

from strawberry.types import ExecutionResult

from graph.errors import INTERNAL

GRAPHQL_RESPONSE_JSON: Final = "application/graphql-response+json"
APPLICATION_JSON: Final = "application/json"


def _media_ranges(accept: str) -> Iterator[tuple[str, float]]:
    """(media range, quality) of each entry of an Accept header."""
    for entry in accept.split(","):
        media_range, *parameters = (part.strip() for part in entry.split(";"))
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media_range:
            yield media_range.lower(), quality


def prefers_graphql_response_json(accept: str | None) -> bool:
    """Whether the client asked for application/graphql-response+json at least as much
    as for application/json (named, or through application/* or */*, most specific first).

    Only a client that names the new type gets it: */* alone and no Accept at all mean
    application/json, as the spec recommends until its watershed.
    """
    if not accept:
        return False
    qualities: dict[str, float] = {}
    for media_range, quality in _media_ranges(accept):
        qualities[media_range] = max(quality, qualities.get(media_range, 0.0))
    wanted = qualities.get(GRAPHQL_RESPONSE_JSON, 0.0)
    json = next(
        (
            qualities[media_range]
            for media_range in (APPLICATION_JSON, "application/*", "*/*")
            if media_range in qualities
        ),
        0.0,
    )
    return wanted > 0 and wanted >= json


def is_request_error(result: ExecutionResult) -> bool:
    """Whether execution never began: no data, and no error belongs to a field.

    Parse, validation and variable coercion errors carry no path; a field error that
    nulled the whole result (a non-null root field) does, and keeps `"data": null`.
    """
    return (
        result.data is None
        and bool(result.errors)
        and all(error.path is None for error in result.errors or ())
    )


def request_error_status(response: Mapping[str, Any]) -> int:
    """The status of a response without data: 400, or 500 for the server's own fault."""
    codes = {
        (error.get("extensions") or {}).get("code")
        for error in response.get("errors") or ()
        if isinstance(error, Mapping)
    }
    return 500 if INTERNAL in codes else 400
