"""The schema, composed by inheritance from the per-domain classes."""

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator, Generator
from functools import partial
from types import TracebackType
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import DisableIntrospection, SchemaExtension, ValidationCache
from strawberry.extensions.context import ExecutingContextManager, OperationContextManager
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import StreamResult
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.execution import PreExecutionError

from core.settings import Settings
from graph.accounts.mutations import AccountMutation
from graph.accounts.queries import AccountQuery
from graph.alerts.mutations import AlertMutation
from graph.alerts.queries import AlertQuery
from graph.alerts.subscriptions import AlertSubscription
from graph.dashboards.mutations import DashboardMutation
from graph.dashboards.queries import DashboardQuery
from graph.devices.mutations import DeviceMutation
from graph.devices.queries import DeviceQuery
from graph.document_cache import SharedDocuments, query_too_long
from graph.errors import ErrorCodes
from graph.firmware.mutations import FirmwareMutation
from graph.firmware.queries import FirmwareQuery
from graph.firmware.subscriptions import FirmwareSubscription
from graph.limits import limit_extensions
from graph.metrics import ApiMetrics
from graph.operation_ids import OperationIds
from graph.operation_metrics import metrics_extensions
from graph.readings.queries import ReadingQuery
from graph.readings.subscriptions import ReadingSubscription


@strawberry.type
class Query(AccountQuery, DeviceQuery, ReadingQuery, DashboardQuery, AlertQuery, FirmwareQuery):
    pass


@strawberry.type
class Mutation(AccountMutation, DeviceMutation, DashboardMutation, AlertMutation, FirmwareMutation):
    pass


@strawberry.type
class Subscription(ReadingSubscription, AlertSubscription, FirmwareSubscription):
    pass


class _OperationHooks(OperationContextManager):
    """A hook stage that stays open for a whole subscription, its generator hooks driven
    directly, as strawberry's exit stack drives them: entered in order, exited in
    reverse, an exception thrown into each, a new one replacing it.

    strawberry wraps every hook of every operation in a context manager of its own (a
    wrapper function with its copied attributes, a bound method, an exit stack): ~6 KiB
    per idle subscription for its five on_operation hooks. A stage with any hook that
    is not a plain generator function gets strawberry's own handling.
    """

    __slots__ = ("_extensions", "_generators", "_lean")

    def __init__(self, extensions: list[SchemaExtension]) -> None:
        default = getattr(SchemaExtension, self.HOOK_NAME)
        hooks = [getattr(type(extension), self.HOOK_NAME) for extension in extensions]
        self._lean = all(h is default or inspect.isgeneratorfunction(h) for h in hooks)
        self._generators: list[Generator[None]] = []
        self._extensions: list[SchemaExtension] = []
        if not self._lean:
            super().__init__(extensions)
            return
        self._extensions = [e for e, h in zip(extensions, hooks, strict=True) if h is not default]

    def __enter__(self) -> None:
        if not self._lean:
            super().__enter__()
            return
        extensions, self._extensions = self._extensions, []
        for extension in extensions:
            generator: Generator[None] = getattr(extension, self.HOOK_NAME)()
            try:
                next(generator)
            except StopIteration:
                error = RuntimeError("generator didn't yield")
                self._unwind(error)
                raise error from None
            except BaseException as error:
                self._unwind(error)
                raise
            self._generators.append(generator)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._lean:
            super().__exit__(exc_type, exc, tb)
            return
        self._unwind(exc)

    async def __aenter__(self) -> None:
        if not self._lean:
            await super().__aenter__()
            return
        self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._lean:
            await super().__aexit__(exc_type, exc, tb)
            return
        self._unwind(exc)

    def _unwind(self, exc: BaseException | None) -> None:
        """Exit the entered hooks, last first; raises what a hook raised instead of `exc`
        (like strawberry's stage, the caller's `exc` goes on even if a hook swallowed it)."""
        pending = exc
        generators, self._generators = self._generators, []
        for generator in reversed(generators):
            try:
                if pending is None:
                    next(generator)
                else:
                    generator.throw(pending)
            except StopIteration:
                pending = None
                continue
            except BaseException as error:  # noqa: BLE001 - handed to the next hook
                if error is not pending:
                    error.__context__ = pending
                pending = error
                continue
            pending = RuntimeError("generator didn't stop")
        if pending is not None and pending is not exc:
            raise pending


class _ExecutingHooks(_OperationHooks):
    __slots__ = ()
    HOOK_NAME = ExecutingContextManager.HOOK_NAME


class _LeanRunner(SchemaExtensionsRunner):
    """strawberry's runner, with the stages that last as long as a subscription lean."""

    def operation(self) -> OperationContextManager:
        return _OperationHooks(self.extensions)

    def executing(self) -> ExecutingContextManager:
        return _ExecutingHooks(self.extensions)  # type: ignore[return-value]


class Schema(strawberry.Schema):
    """strawberry's schema, minus its logging of every client error at ERROR level:
    graph.errors logs the unexpected ones (with their trace), the rest are answers.
    Query texts over `max_query_chars` are refused before any extension sees them."""

    max_query_chars: int | None = None

    async def execute(self, query: str | None, *args: Any, **kwargs: Any) -> ExecutionResult:
        if refusal := self._refusal(query):
            return PreExecutionError(data=None, errors=[refusal])
        return await super().execute(query, *args, **kwargs)

    async def stream(self, query: str | None, *args: Any, **kwargs: Any) -> StreamResult:
        # Over WebSocket (both protocols: subscribe() comes here too) and HTTP streams.
        if refusal := self._refusal(query):
            return _refused(refusal)
        return await super().stream(query, *args, **kwargs)

    def _refusal(self, query: str | None) -> GraphQLError | None:
        if self.max_query_chars is None:
            return None
        return query_too_long(query, self.max_query_chars)

    def create_extensions_runner(
        self, execution_context: ExecutionContext, extensions: list[SchemaExtension]
    ) -> SchemaExtensionsRunner:
        return _LeanRunner(execution_context=execution_context, extensions=extensions)

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        return None


def build_schema(settings: Settings, *, metrics: ApiMetrics | None = None) -> Schema:
    """The executable schema with the limits of `settings`, counting into `metrics`."""
    schema = Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(),
        # Factories, not instances: an extension instance holds one request's state.
        # No ParserCache: its parse errors bypass on_operation, so they would lose their code.
        extensions=[
            # First: its hooks end last, after ErrorCodes has coded the errors.
            *metrics_extensions(metrics),
            OperationIds,  # logs within the operation carry its id
            ErrorCodes,
            *limit_extensions(settings),
            # GRAPHQL_INTROSPECTION off: __schema and __type refused (BAD_USER_INPUT).
            *([] if settings.graphql_introspection else [DisableIntrospection]),
            partial(ValidationCache, maxsize=256),
            SharedDocuments,  # one parsed document per query text (graph.document_cache)
        ],
    )
    schema.max_query_chars = settings.graphql_max_query_chars
    return schema


async def _refused(error: GraphQLError) -> AsyncGenerator[ExecutionResult]:
    yield PreExecutionError(data=None, errors=[error])
