"""Counts and times every GraphQL operation, by name, type and contract error code."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial

from graphql import GraphQLError, OperationDefinitionNode
from strawberry.exceptions import MissingQueryError
from strawberry.extensions import SchemaExtension
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import StreamExecutionResult

from graph.errors import BAD_USER_INPUT, CODES, INTERNAL, classify
from graph.metrics import UNKNOWN, ApiMetrics

OK = "OK"

# Refused by strawberry before any result exists (the HTTP view answers 400).
_REQUEST_ERRORS = (MissingQueryError, CannotGetOperationTypeError, InvalidOperationTypeError)


def first_code(errors: Sequence[GraphQLError] | None) -> str | None:
    """The contract code of the first error, None without errors."""
    if not errors:
        return None
    code = (errors[0].extensions or {}).get("code")
    return code if isinstance(code, str) and code in CODES else classify(errors[0])


class OperationMetrics(SchemaExtension):
    """Listed before ErrorCodes, so each of its hooks ends after that one coded the errors.

    Queries and mutations are timed; a subscription, which lasts as long as its
    client wants, is only counted when it ends, with the first error it sent.
    """

    def __init__(self, *, metrics: ApiMetrics) -> None:
        self.metrics = metrics
        self._streamed_code: str | None = None

    def on_stream_result(self, result: StreamExecutionResult) -> Iterator[None]:
        yield
        if self._streamed_code is None:
            self._streamed_code = first_code(getattr(result, "errors", None))

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        failure: str | None = None
        try:
            yield
        except _REQUEST_ERRORS:
            failure = BAD_USER_INPUT
            raise
        except Exception:
            failure = INTERNAL
            raise
        finally:
            self._record(failure, time.perf_counter() - started)

    def _record(self, failure: str | None, seconds: float) -> None:
        context = self.execution_context
        result = context.result
        code = (
            failure
            or self._streamed_code
            or first_code(result.errors if result is not None else None)
            or first_code(context.pre_execution_errors)
            or OK
        )
        operation = self._operation()
        operation_type = operation.operation.value if operation is not None else UNKNOWN
        name = (
            self.metrics.operation_label(operation.name.value if operation.name else None)
            if operation is not None
            else UNKNOWN
        )
        timed = operation_type != "subscription"
        self.metrics.record_operation(name, operation_type, code, seconds if timed else None)

    def _operation(self) -> OperationDefinitionNode | None:
        """The document's operation that ran; None when there is no such operation."""
        context = self.execution_context
        document = context.graphql_document
        if document is None:
            return None
        wanted = context.operation_name
        for definition in document.definitions:
            if not isinstance(definition, OperationDefinitionNode):
                continue
            if wanted is None or (definition.name and definition.name.value == wanted):
                return definition
        return None


def metrics_extensions(metrics: ApiMetrics | None) -> list[Callable[[], SchemaExtension]]:
    """The factory of the metrics extension; none without metrics."""
    return [] if metrics is None else [partial(OperationMetrics, metrics=metrics)]
