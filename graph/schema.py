"""The schema, composed by inheritance from the per-domain classes."""

from __future__ import annotations

from functools import partial

import strawberry
from graphql import GraphQLError
from strawberry.extensions import ValidationCache
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

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
from graph.document_cache import SharedDocuments
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


class Schema(strawberry.Schema):
    """strawberry's schema, minus its logging of every client error at ERROR level:
    graph.errors logs the unexpected ones (with their trace), the rest are answers."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        return None


def build_schema(settings: Settings, *, metrics: ApiMetrics | None = None) -> Schema:
    """The executable schema with the limits of `settings`, counting into `metrics`."""
    return Schema(
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
            partial(ValidationCache, maxsize=256),
            SharedDocuments,  # one parsed document per query text (graph.document_cache)
        ],
    )
