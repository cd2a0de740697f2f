"""The contract's error codes on every GraphQL error; unexpected ones masked."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Final

from graphql import GraphQLError
from graphql.error import GraphQLSyntaxError
from pymongo.errors import PyMongoError
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionResult, StreamExecutionResult

from services.errors import QueryTimeout, ServiceError

logger = logging.getLogger(__name__)

UNAUTHENTICATED: Final = "UNAUTHENTICATED"
FORBIDDEN: Final = "FORBIDDEN"
NOT_FOUND: Final = "NOT_FOUND"
BAD_USER_INPUT: Final = "BAD_USER_INPUT"
CONFLICT: Final = "CONFLICT"
RATE_LIMITED: Final = "RATE_LIMITED"
QUERY_TOO_COMPLEX: Final = "QUERY_TOO_COMPLEX"
INTERNAL: Final = "INTERNAL"

CODES: Final = frozenset(
    {
        UNAUTHENTICATED,
        FORBIDDEN,
        NOT_FOUND,
        BAD_USER_INPUT,
        CONFLICT,
        RATE_LIMITED,
        QUERY_TOO_COMPLEX,
        INTERNAL,
    }
)

# Messages of strawberry's and graphql-core's own limit checks.
_LIMIT_MESSAGES = re.compile(
    r"exceeds maximum operation depth|aliases found|contains more than \d+ tokens"
)


def _as_service_error(original: Exception | None) -> ServiceError | None:
    """`original` as a ServiceError: itself, or a query's MongoDB time budget running
    out (maxTimeMS, graph.limits.QueryCost), which is the query's cost, not a fault."""
    if isinstance(original, ServiceError):
        return original
    if isinstance(original, PyMongoError) and original.timeout:
        return QueryTimeout()
    return None


def classify(error: GraphQLError) -> str:
    """The contract code for one error."""
    original = error.original_error
    if (service_error := _as_service_error(original)) is not None:
        return service_error.code
    code = (error.extensions or {}).get("code")
    if isinstance(code, str) and code in CODES:
        return code
    if original is None or isinstance(error, GraphQLSyntaxError):
        # Parse and validation errors: a document the schema does not accept.
        return QUERY_TOO_COMPLEX if _LIMIT_MESSAGES.search(error.message) else BAD_USER_INPUT
    if isinstance(original, GraphQLError):
        return classify(original)
    return INTERNAL


def _is_service_error(error: GraphQLError) -> bool:
    original = error.original_error
    if isinstance(original, GraphQLError):
        return _is_service_error(original)
    return _as_service_error(original) is not None


def with_code(error: GraphQLError) -> GraphQLError:
    """`error` carrying its code; an unexpected INTERNAL one keeps no message or trace
    (a ServiceError with code INTERNAL, e.g. broker unavailable, keeps its message)."""
    code = classify(error)
    if code == INTERNAL and not _is_service_error(error):
        logger.error("unexpected error at %s", error.path, exc_info=error.original_error or error)
        message = "Internal server error."
    elif isinstance(error.original_error, PyMongoError):
        # The driver's words name servers and settings: the contract's instead.
        message = QueryTimeout().message
    else:
        message = error.message
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=None,
        extensions={**(error.extensions or {}), "code": code},
    )


def with_codes(errors: list[GraphQLError]) -> list[GraphQLError]:
    """Every error with its code; a document refused as too complex gets only that answer
    (its other faults are beside the point, and listing them costs work)."""
    coded = [with_code(error) for error in errors]
    too_complex = [e for e in coded if (e.extensions or {}).get("code") == QUERY_TOO_COMPLEX]
    return too_complex or coded


class ErrorCodes(SchemaExtension):
    """Puts `extensions.code` on every error of a result, masking the unexpected."""

    # Set once a result went out through on_stream_result (coded there, not again).
    _streamed = False

    def on_stream_result(self, result: StreamExecutionResult) -> Iterator[None]:
        # Over WebSocket every result (each subscription event too) is sent from
        # inside on_operation, so it must get its codes here, before it leaves.
        self._streamed = True
        if isinstance(result, ExecutionResult) and result.errors:
            result.errors = with_codes(list(result.errors))
        yield

    def on_operation(self) -> Iterator[None]:
        yield
        if self._streamed:
            return
        result = self.execution_context.result
        if result is not None and result.errors:
            result.errors = with_codes(list(result.errors))
        # Errors raised before execution (parse, validation) may live here instead.
        pre = self.execution_context.pre_execution_errors
        if pre:
            self.execution_context.pre_execution_errors = with_codes(list(pre))
