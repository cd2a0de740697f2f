"""Query depth, alias, token and cost limits (QUERY_TOO_COMPLEX), and a query's
MongoDB time budget."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Final, Protocol

import pymongo
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    ValidationRule,
    get_named_type,
)
from graphql import (
    ExecutionResult as GraphQLExecutionResult,
)
from graphql.language import VariableNode
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.types.graphql import OperationType

from core.settings import ApiSettings
from graph.errors import QUERY_TOO_COMPLEX
from live.compat import graphql_schema
from services import readings


def _page_multiplier(node: FieldNode, field_args: dict[str, Any], settings: ApiSettings) -> int:
    if "first" not in field_args:
        return 1
    for argument in node.arguments or ():
        if argument.name.value == "first":
            if isinstance(argument.value, IntValueNode):
                return max(1, min(int(argument.value.value), settings.page_size_max))
            if isinstance(argument.value, VariableNode):
                # Variables are not known at validation: assume the largest page.
                return settings.page_size_max
    return settings.page_size_default


class _Unknown:
    """An argument's value given by a variable, at validation (variables not known yet)."""


UNKNOWN: Final = _Unknown()


def _argument(node: FieldNode, name: str, variables: dict[str, Any] | None) -> object:
    """One argument's value as sent: a literal, a variable's value, or UNKNOWN."""
    for argument in node.arguments or ():
        if argument.name.value == name:
            if isinstance(argument.value, VariableNode):
                if variables is None:
                    return UNKNOWN
                return variables.get(argument.value.name.value)
            if isinstance(argument.value, StringValueNode | IntValueNode):
                return argument.value.value
    return None


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _aggregate_cost(node: FieldNode, variables: dict[str, Any] | None) -> int | None:
    """Query.aggregate costs its buckets ((to - from) / bucket); None until known (its
    arguments are variables, priced at execution by QueryCost) or invalid (refused
    by the resolver, which reads nothing then)."""
    start = _instant(_argument(node, "from", variables))
    end = _instant(_argument(node, "to", variables))
    bucket = _argument(node, "bucket", variables)
    if start is None or end is None or not isinstance(bucket, str):
        return None
    return readings.bucket_count(start, end, bucket)


# Fields whose work grows with their arguments, not their selection: (type, field) ->
# their whole cost, selection included.
PRICED_FIELDS: Final[
    dict[tuple[str, str], Callable[[FieldNode, dict[str, Any] | None], int | None]]
] = {
    ("Query", "aggregate"): _aggregate_cost,
}


class _Fragments(Protocol):
    @property
    def schema(self) -> GraphQLSchema: ...

    def get_fragment(self, name: str) -> FragmentDefinitionNode | None: ...


@dataclass(frozen=True, slots=True)
class DocumentFragments:
    """What selection_cost needs of a ValidationContext, from a parsed document."""

    schema: GraphQLSchema
    fragments: dict[str, FragmentDefinitionNode]

    def get_fragment(self, name: str) -> FragmentDefinitionNode | None:
        return self.fragments.get(name)


def selection_cost(
    selection_set: SelectionSetNode | None,
    parent: Any,
    context: _Fragments,
    settings: ApiSettings,
    seen_fragments: frozenset[str] = frozenset(),
    *,
    variables: dict[str, Any] | None = None,
) -> int:
    """Fields selected, each list multiplied by its page size; fragments expanded;
    priced fields at their price. `variables` None: at validation, before they are known."""
    if selection_set is None or not hasattr(parent, "fields"):
        return 0
    schema: GraphQLSchema = context.schema
    total = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            field_def = (
                parent.fields.get(selection.name.value) if hasattr(parent, "fields") else None
            )
            if field_def is None:
                total += 1
                continue
            price = PRICED_FIELDS.get((parent.name, selection.name.value))
            if price is not None:
                total += 1 + (price(selection, variables) or 0)
                continue
            multiplier = _page_multiplier(selection, field_def.args, settings)
            child = get_named_type(field_def.type)
            total += 1 + multiplier * selection_cost(
                selection.selection_set,
                child,
                context,
                settings,
                seen_fragments,
                variables=variables,
            )
        elif isinstance(selection, InlineFragmentNode):
            target = (
                schema.get_type(selection.type_condition.name.value)
                if selection.type_condition
                else parent
            )
            total += selection_cost(
                selection.selection_set,
                target,
                context,
                settings,
                seen_fragments,
                variables=variables,
            )
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = context.get_fragment(name)
            if fragment is None or name in seen_fragments:
                continue
            target = schema.get_type(fragment.type_condition.name.value)
            total += selection_cost(
                fragment.selection_set,
                target,
                context,
                settings,
                seen_fragments | {name},
                variables=variables,
            )
    return total


def cost_limit_rule(settings: ApiSettings) -> type[ValidationRule]:
    """A validation rule refusing operations whose estimated cost is over the limit."""

    class CostLimit(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_args: object) -> None:
            root = self.context.schema.get_root_type(node.operation)
            cost = selection_cost(node.selection_set, root, self.context, settings)
            if cost > settings.graphql_max_cost:
                self.report_error(_too_costly(cost, settings, node))

    return CostLimit


def _too_costly(cost: int, settings: ApiSettings, node: OperationDefinitionNode) -> GraphQLError:
    return GraphQLError(
        f"Operation cost {cost} exceeds the limit of {settings.graphql_max_cost}.",
        node,
        extensions={"code": QUERY_TOO_COMPLEX},
    )


def _priced_by_variables(query: str | None, document: DocumentNode) -> bool:
    """Whether a priced field may take a variable in this operation: the text names one
    (a substring test, no walk), and an operation declares variables."""
    if not query or not any(name in query for _type, name in PRICED_FIELDS):
        return False
    return any(
        isinstance(definition, OperationDefinitionNode) and definition.variable_definitions
        for definition in document.definitions
    )


class QueryCost(SchemaExtension):
    """The cost limit again once the variables are known, for the operations whose
    priced fields (aggregate) take them; and one MongoDB time budget per query.

    The validation rule runs once per document (ValidationCache), so it cannot see
    variables: a priced field given by variables is priced here, before execution,
    so a refusal reads nothing. A query's reads all run inside one pymongo.timeout():
    each command carries maxTimeMS of what is left (graph.errors maps running out to
    QUERY_TOO_COMPLEX). Mutations are not bounded this way (an upload streams for
    longer), nor are subscriptions (their streams outlive any budget).
    """

    def __init__(self, *, settings: ApiSettings) -> None:
        self.settings = settings

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is None or context.operation_type is not OperationType.QUERY:
            yield
            return
        if _priced_by_variables(context.query, document):
            cost = self._cost(document, context.variables or {})
            if cost is not None and cost[0] > self.settings.graphql_max_cost:
                context.result = GraphQLExecutionResult(
                    data=None, errors=[_too_costly(cost[0], self.settings, cost[1])]
                )
                yield
                return
        with pymongo.timeout(self.settings.mongodb_query_max_time_ms / 1000):
            yield

    def _cost(
        self, document: DocumentNode, variables: dict[str, Any]
    ) -> tuple[int, OperationDefinitionNode] | None:
        schema = graphql_schema(self.execution_context.schema)
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        name = self.execution_context.operation_name
        chosen = [o for o in operations if name is None or (o.name and o.name.value == name)]
        if len(chosen) != 1 or schema.query_type is None:
            return None
        fragments = DocumentFragments(
            schema,
            {
                d.name.value: d
                for d in document.definitions
                if isinstance(d, FragmentDefinitionNode)
            },
        )
        cost = selection_cost(
            chosen[0].selection_set,
            schema.query_type,
            fragments,
            self.settings,
            variables=variables,
        )
        return cost, chosen[0]


def limit_extensions(settings: ApiSettings) -> list[Callable[[], SchemaExtension]]:
    """Factories of the extensions enforcing every limit of the settings.

    The depth and alias limiters build a new validation rule class in their
    constructors; built per operation, every operation had rules of its own, so
    strawberry's ValidationCache (keyed on the document and the rule classes) never
    hit, and each subscription kept ~5 KiB of classes alive. Their rules are built
    once here and added, with the cost rule, by one extension per operation.
    """
    rules = [
        *QueryDepthLimiter(max_depth=settings.graphql_max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=settings.graphql_max_aliases).validation_rules,
        cost_limit_rule(settings),
    ]
    return [
        partial(MaxTokensLimiter, max_token_count=settings.graphql_max_tokens),
        partial(AddValidationRules, rules),
        partial(QueryCost, settings=settings),
    ]
