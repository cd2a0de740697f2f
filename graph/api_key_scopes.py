"""What a request authenticated with an API key may run: its scopes, per operation.

graph.schema authenticates an API key before the operation starts (the lookup is
async; these hooks are not, so they stay on the lean path of live.compat), and this
extension holds the operation against the key's scopes (services.api_keys) once the
document is parsed and validated: a refused operation runs no resolver at all.
"""

from __future__ import annotations

from collections.abc import Iterator

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from services.api_keys import ApiKeyGrant, check_operation
from services.errors import ServiceError


def root_fields(document: DocumentNode, operation_name: str | None) -> list[str]:
    """The root field names of the operation that runs, fragments expanded."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    chosen = [
        o
        for o in operations
        if operation_name is None or (o.name and o.name.value == operation_name)
    ]
    if not chosen:
        return []
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    names: list[str] = []

    def collect(selection_set: SelectionSetNode, seen: frozenset[str]) -> None:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                names.append(selection.name.value)
            elif isinstance(selection, InlineFragmentNode):
                collect(selection.selection_set, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = fragments.get(name)
                if fragment is not None and name not in seen:
                    collect(fragment.selection_set, seen | {name})

    collect(chosen[0].selection_set, frozenset())
    return names


class ApiKeyScopes(SchemaExtension):
    """Refuses (FORBIDDEN) an operation the caller's API key does not allow."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        grant: ApiKeyGrant | None = getattr(context.context, "api_key", None)
        document = context.graphql_document
        if grant is None or document is None or context.result is not None:
            yield
            return
        try:
            check_operation(
                grant,
                context.operation_type.value,
                root_fields(document, context.operation_name),
            )
        except ServiceError as err:
            if context.operation_type is OperationType.SUBSCRIPTION:
                # A subscription does not look at a preset result: refused by raising
                # (strawberry answers it as this operation's error).
                raise
            # A preset result is what strawberry answers instead of executing.
            context.result = GraphQLExecutionResult(
                data=None, errors=[GraphQLError(err.message, original_error=err)]
            )
        yield
