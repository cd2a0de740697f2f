"""The schema, composed by inheritance from the per-domain classes."""

from __future__ import annotations

from functools import partial

import strawberry
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.schema.config import StrawberryConfig

from core.settings import Settings
from graph.accounts.mutations import AccountMutation
from graph.accounts.queries import AccountQuery
from graph.devices.mutations import DeviceMutation
from graph.devices.queries import DeviceQuery
from graph.errors import ErrorCodes
from graph.limits import limit_extensions


@strawberry.type
class Query(AccountQuery, DeviceQuery):
    pass


@strawberry.type
class Mutation(AccountMutation, DeviceMutation):
    pass


def build_schema(settings: Settings) -> strawberry.Schema:
    """The executable schema with the limits of `settings`."""
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        config=StrawberryConfig(),
        # Factories, not instances: an extension instance holds one request's state.
        extensions=[
            ErrorCodes,
            *limit_extensions(settings),
            partial(ParserCache, maxsize=256),
            partial(ValidationCache, maxsize=256),
        ],
    )
