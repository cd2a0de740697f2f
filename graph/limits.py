"""Query depth, alias, token and cost limits (QUERY_TOO_COMPLEX)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    get_named_type,
)
from graphql.language import VariableNode
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)

from core.settings import Settings
from graph.errors import QUERY_TOO_COMPLEX


def _page_multiplier(node: FieldNode, field_args: dict[str, Any], settings: Settings) -> int:
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


def selection_cost(
    selection_set: SelectionSetNode | None,
    parent: Any,
    context: ValidationContext,
    settings: Settings,
    seen_fragments: frozenset[str] = frozenset(),
) -> int:
    """Fields selected, each list multiplied by its page size; fragments expanded."""
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
            multiplier = _page_multiplier(selection, field_def.args, settings)
            child = get_named_type(field_def.type)
            total += 1 + multiplier * selection_cost(
                selection.selection_set, child, context, settings, seen_fragments
            )
        elif isinstance(selection, InlineFragmentNode):
            target = (
                schema.get_type(selection.type_condition.name.value)
                if selection.type_condition
                else parent
            )
            total += selection_cost(
                selection.selection_set, target, context, settings, seen_fragments
            )
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = context.get_fragment(name)
            if fragment is None or name in seen_fragments:
                continue
            target = schema.get_type(fragment.type_condition.name.value)
            total += selection_cost(
                fragment.selection_set, target, context, settings, seen_fragments | {name}
            )
    return total


def cost_limit_rule(settings: Settings) -> type[ValidationRule]:
    """A validation rule refusing operations whose estimated cost is over the limit."""

    class CostLimit(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_args: object) -> None:
            root = self.context.schema.get_root_type(node.operation)
            cost = selection_cost(node.selection_set, root, self.context, settings)
            if cost > settings.graphql_max_cost:
                self.report_error(
                    GraphQLError(
                        f"Operation cost {cost} exceeds the limit of {settings.graphql_max_cost}.",
                        node,
                        extensions={"code": QUERY_TOO_COMPLEX},
                    )
                )

    return CostLimit


def limit_extensions(settings: Settings) -> list[Callable[[], SchemaExtension]]:
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
    ]
