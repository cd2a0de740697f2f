"""The schema, composed by inheritance from the per-domain classes."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from functools import partial
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import DisableIntrospection, ValidationCache
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import StreamResult
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.execution import PreExecutionError

from core.settings import ApiSettings
from graph.accounts.email import EmailAccountMutation
from graph.accounts.mutations import AccountMutation
from graph.accounts.queries import AccountQuery
from graph.alerts.mutations import AlertMutation
from graph.alerts.queries import AlertQuery
from graph.alerts.subscriptions import AlertSubscription
from graph.api_key_scopes import ApiKeyScopes
from graph.api_keys.mutations import ApiKeyMutation
from graph.api_keys.queries import ApiKeyQuery
from graph.audit.queries import AuditQuery
from graph.commands.mutations import CommandMutation
from graph.commands.queries import CommandQuery
from graph.commands.subscriptions import CommandSubscription
from graph.context import Context
from graph.dashboards.mutations import DashboardMutation
from graph.dashboards.queries import DashboardQuery
from graph.devices.mutations import DeviceMutation
from graph.devices.queries import DeviceQuery
from graph.document_cache import SharedDocuments, query_too_long
from graph.errors import ErrorCodes, with_code
from graph.firmware.mutations import FirmwareMutation
from graph.firmware.queries import FirmwareQuery
from graph.firmware.subscriptions import FirmwareSubscription
from graph.limits import limit_extensions
from graph.logs.queries import DeviceLogQuery
from graph.logs.subscriptions import DeviceLogSubscription
from graph.metrics import ApiMetrics
from graph.notifications.mutations import NotificationMutation
from graph.operation_ids import OperationIds
from graph.operation_metrics import metrics_extensions
from graph.organizations.mutations import OrganizationMutation
from graph.organizations.queries import OrganizationQuery
from graph.readings.queries import ReadingQuery
from graph.readings.subscriptions import ReadingSubscription
from graph.twins.mutations import TwinMutation
from graph.twins.subscriptions import TwinSubscription
from live.compat import LeanHooksSchema
from services.errors import ServiceError


@strawberry.type
class Query(
    AccountQuery,
    DeviceQuery,
    ReadingQuery,
    DashboardQuery,
    AlertQuery,
    FirmwareQuery,
    DeviceLogQuery,
    ApiKeyQuery,
    AuditQuery,
    CommandQuery,
    OrganizationQuery,
):
    pass


@strawberry.type
class Mutation(
    AccountMutation,
    DeviceMutation,
    DashboardMutation,
    AlertMutation,
    FirmwareMutation,
    TwinMutation,
    ApiKeyMutation,
    CommandMutation,
    EmailAccountMutation,
    NotificationMutation,
    OrganizationMutation,
):
    pass


@strawberry.type
class Subscription(
    ReadingSubscription,
    AlertSubscription,
    FirmwareSubscription,
    DeviceLogSubscription,
    TwinSubscription,
    CommandSubscription,
):
    pass


class Schema(LeanHooksSchema):
    """strawberry's schema, minus its logging of every client error at ERROR level:
    graph.errors logs the unexpected ones (with their trace), the rest are answers.
    Query texts over `max_query_chars` are refused before any extension sees them.
    Its hooks cost less per open subscription (live.compat.LeanHooksSchema)."""

    max_query_chars: int | None = None

    async def execute(self, query: str | None, *args: Any, **kwargs: Any) -> ExecutionResult:
        if refusal := self._refusal(query) or await _api_key_refusal(kwargs, args, 1):
            return PreExecutionError(data=None, errors=[refusal])
        return await super().execute(query, *args, **kwargs)

    async def stream(self, query: str | None, *args: Any, **kwargs: Any) -> StreamResult:
        # Over WebSocket (both protocols: subscribe() comes here too) and HTTP streams.
        if refusal := self._refusal(query) or await _api_key_refusal(kwargs, args, 1):
            return _refused(refusal)
        return await super().stream(query, *args, **kwargs)

    def _refusal(self, query: str | None) -> GraphQLError | None:
        if self.max_query_chars is None:
            return None
        return query_too_long(query, self.max_query_chars)

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        return None


def build_schema(settings: ApiSettings, *, metrics: ApiMetrics | None = None) -> Schema:
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
            ApiKeyScopes,  # what an API key's scopes allow (graph.api_key_scopes)
            *limit_extensions(settings),
            # GRAPHQL_INTROSPECTION off: __schema and __type refused (BAD_USER_INPUT).
            *([] if settings.graphql_introspection else [DisableIntrospection]),
            partial(ValidationCache, maxsize=256),
            SharedDocuments,  # one parsed document per query text (graph.document_cache)
        ],
    )
    schema.max_query_chars = settings.graphql_max_query_chars
    return schema


async def _api_key_refusal(
    kwargs: dict[str, Any], args: tuple[Any, ...], position: int
) -> GraphQLError | None:
    """Authenticates a request's API key before the operation starts (ApiKeyScopes then
    holds the operation against its scopes); the error when the key is refused."""
    context = kwargs.get("context_value", args[position] if len(args) > position else None)
    if not isinstance(context, Context) or not context.carries_api_key():
        return None
    try:
        await context.authenticate()
    except ServiceError as err:
        return with_code(GraphQLError(err.message, original_error=err))
    return None


async def _refused(error: GraphQLError) -> AsyncGenerator[ExecutionResult]:
    yield PreExecutionError(data=None, errors=[error])
