"""One execution per event and selection, shared by every subscriber that selected it.

strawberry executes a subscription's selection set once per event per subscriber, through
its extension hooks, and encodes each result on its own. A type marked `@shareable` is
built from the live event alone, every field a plain value of it, so the result of a
selection of such types cannot depend on who watches: it is executed once per event and
selection in this process, encoded once, and written to each subscriber's WebSocket
inside its own envelope (only the operation id differs).

Who may see an event is still decided per subscriber and per event (services.live's
Feed.allows) before anything is looked up here. A selection that reaches a type not
marked, a directive other than @skip/@include, or an argument, and a result with
errors, go the normal way through strawberry.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import orjson
import strawberry
from graphql import (
    DocumentNode,
    ExecutionResult,
    Executor,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLResolveInfo,
    GraphQLSchema,
    InlineFragmentNode,
    Node,
    SelectionSetNode,
    VariableNode,
    execute_subscription_event,
    parse,
)
from strawberry.types.base import get_object_definition

logger = logging.getLogger(__name__)

_MARK: Final = "__live_shareable__"
_DIRECTIVES: Final = frozenset({"skip", "include"})
PLANS: Final = 256  # distinct (document, operation, variables that matter) per process
RESULTS: Final = 4096  # encoded (event, plan) results kept; subscribers lag a little


def shareable[T: type](cls: T) -> T:
    """Mark a strawberry type as built from a live event alone (put above @strawberry.type).

    Refused for a type with a field that has a resolver, arguments, permissions or
    directives: such a field could read the viewer. Fields of object types must be of
    marked types too, which sharing checks as it walks a selection (and
    tests/unit/live/test_shareable_types.py checks for every subscription's types).
    """
    definition = get_object_definition(cls, strict=True)
    for field in definition.fields:
        if (
            field.base_resolver is not None
            or field.arguments
            or field.permission_classes
            or field.directives
        ):
            raise TypeError(
                f"{definition.name}.{field.python_name} is resolved, takes arguments, "
                "permissions or directives: its value may depend on the viewer"
            )
    setattr(cls, _MARK, True)
    return cls


def is_shareable(cls: object) -> bool:
    """Whether `cls` itself (not a base class) is marked @shareable."""
    return isinstance(cls, type) and vars(cls).get(_MARK) is True


@dataclass(frozen=True, slots=True)
class SocketWriter:
    """One WebSocket operation's way out past strawberry: the socket's text sender, the
    operation's envelope, and the operation (for its shared plan).

    The protocol handlers (live.compat) pass it as the operation's root value; a
    subscription resolver hands its `info` to live.stream, which reads it there."""

    send_text: Callable[[str], Awaitable[None]]
    head: str  # the envelope up to the payload: '{"id":"1","type":"next","payload":'
    query: str
    operation_name: str | None
    variables: dict[str, Any] | None

    @classmethod
    def for_operation(
        cls,
        send_text: Callable[[str], Awaitable[None]],
        *,
        operation_id: str,
        message_type: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, Any] | None,
    ) -> SocketWriter:
        head = f'{{"id":{json.dumps(operation_id)},"type":"{message_type}","payload":'
        return cls(send_text, head, query, operation_name, variables)

    async def send(self, payload: str) -> None:
        await self.send_text(f"{self.head}{payload}}}")


class SharedPlan:
    """One selection of a shareable subscription, executable on any event."""

    __slots__ = ("executor", "key")

    def __init__(self, key: tuple[Any, ...], executor: Executor[Any]) -> None:
        self.key = key
        self.executor = executor


class SharedResults:
    """The process's plans and encoded results (live.delivery opens it in the lifespan).

    Results are kept by (event, plan) and computed by the first subscriber that asks:
    the bus hands every local subscriber of a channel the same decoded event."""

    def __init__(self, *, plans: int = PLANS, results: int = RESULTS) -> None:
        self._max_plans = plans
        self._max_results = results
        self._plans: OrderedDict[tuple[Any, ...], SharedPlan | None] = OrderedDict()
        # (id(event), plan key) -> (event, payload); the event is kept so its id
        # cannot be reused while the entry lives.
        self._results: OrderedDict[tuple[int, tuple[Any, ...]], tuple[object, str | None]] = (
            OrderedDict()
        )
        self.executions = 0  # how many times a selection really ran (tests, diagnostics)

    def plan(
        self, info: GraphQLResolveInfo[Any], schema: strawberry.Schema, writer: SocketWriter
    ) -> SharedPlan | None:
        """The shared plan of this subscription's selection, None when it must not share
        (`schema` is strawberry's, which knows the marked types)."""
        used = _used_variables(info, schema)
        if used is None:
            return None
        # graphql-core's VariableValues, or a plain dict when the subscription's source
        # stream is created (strawberry's subscribe path).
        raw: Any = info.variable_values
        variables: dict[str, Any] = getattr(raw, "coerced", raw)
        try:
            relevant = json.dumps({name: variables.get(name) for name in sorted(used)})
        except TypeError:
            return None
        key = (writer.query, writer.operation_name, relevant)
        if key in self._plans:
            self._plans.move_to_end(key)
            return self._plans[key]
        plan = _build(key, info.schema, writer)
        self._plans[key] = plan
        if len(self._plans) > self._max_plans:
            self._plans.popitem(last=False)
        return plan

    def payload[E](self, plan: SharedPlan, event: E, convert: Callable[[E], object]) -> str | None:
        """The encoded `next` payload of `event` (`convert` makes its GraphQL value when
        it is not cached yet); None when it must go through strawberry."""
        key = (id(event), plan.key)
        entry = self._results.get(key)
        if entry is not None and entry[0] is event:
            return entry[1]
        payload = self._execute(plan, convert(event))
        self._results[key] = (event, payload)
        if len(self._results) > self._max_results:
            self._results.popitem(last=False)
        return payload

    def _execute(self, plan: SharedPlan, root: object) -> str | None:
        self.executions += 1
        try:
            result = execute_subscription_event(plan.executor.build_per_event_executor(root))
        except Exception:  # noqa: BLE001 - strawberry's path reports it properly
            return None
        if not isinstance(result, ExecutionResult):
            close = getattr(result, "close", None)  # an unawaited coroutine: not ours to run
            if close is not None:
                close()
            return None
        if not isinstance(result.data, dict) or result.errors:
            return None  # errors (and their codes, metrics) are strawberry's to send
        return orjson.dumps({"data": result.data}).decode()


def _build(key: tuple[Any, ...], schema: GraphQLSchema, writer: SocketWriter) -> SharedPlan | None:
    document: DocumentNode = parse(writer.query)
    # No context: a selection that reached for the viewer would fail, not leak.
    executor = Executor.build(
        schema,
        document,
        raw_variable_values=writer.variables,
        operation_name=writer.operation_name,
    )
    if isinstance(executor, list):
        logger.debug("no shared plan: %s", executor)
        return None
    return SharedPlan(key, executor)


class _Walk:
    """A selection's walk: which types may share, and the variables it reads."""

    def __init__(self, info: GraphQLResolveInfo[Any], schema: strawberry.Schema) -> None:
        self.info = info
        self.schema = schema
        self.used: set[str] = set()

    def marked(self, type_name: str) -> bool:
        definition = self.schema.get_type_by_name(type_name)
        return is_shareable(getattr(definition, "origin", None))

    def selection_set(
        self, selection_set: SelectionSetNode | None, type_name: str, seen: frozenset[str]
    ) -> bool:
        if selection_set is None:
            return True
        if not self.marked(type_name):
            return False
        fields = getattr(self.info.schema.get_type(type_name), "fields", {})
        for selection in selection_set.selections:
            if not self.directives(selection):
                return False
            if isinstance(selection, FieldNode):
                name = selection.name.value
                if name == "__typename":
                    continue
                if selection.arguments or name not in fields:
                    return False
                child = fields[name].type
                while hasattr(child, "of_type"):
                    child = child.of_type
                if selection.selection_set is not None and not self.selection_set(
                    selection.selection_set, child.name, seen
                ):
                    return False
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = condition.name.value if condition else type_name
                if not self.selection_set(selection.selection_set, target, seen):
                    return False
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment: FragmentDefinitionNode | None = self.info.fragments.get(name)
                if fragment is None or name in seen or getattr(selection, "arguments", None):
                    return False
                target = fragment.type_condition.name.value
                if not self.selection_set(fragment.selection_set, target, seen | {name}):
                    return False
            else:
                return False
        return True

    def directives(self, selection: Node) -> bool:
        for directive in getattr(selection, "directives", None) or ():
            if directive.name.value not in _DIRECTIVES:
                return False
            self.used.update(_variables(argument.value for argument in directive.arguments or ()))
        return True


def _used_variables(info: GraphQLResolveInfo[Any], schema: strawberry.Schema) -> set[str] | None:
    """Variables the selection below the subscription's field reads; None if it must not
    be shared (a type not marked @shareable, another directive, an argument)."""
    walk = _Walk(info, schema)
    parent = info.return_type
    while hasattr(parent, "of_type"):
        parent = parent.of_type
    for node in info.field_nodes:
        if not walk.directives(node):
            return None
        if not walk.selection_set(node.selection_set, getattr(parent, "name", ""), frozenset()):
            return None
    return walk.used


def _variables(values: Iterable[Node]) -> set[str]:
    return {value.name.value for value in values if isinstance(value, VariableNode)}
