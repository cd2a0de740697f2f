"""One execution per event and selection, shared by every subscriber that selected it.

strawberry executes a subscription's selection set once per event per subscriber,
through its extension hooks, and encodes each result on its own. For the live types
whose every field is a plain value taken from the event (Reading, MetricValue,
DeviceStatusUpdate), the result of a selection cannot depend on who watches: it is
executed once per event and selection in this process, encoded once, and written to
each subscriber's WebSocket inside its own envelope (only the operation id differs).

Who may see an event is still decided per subscriber and per event (services.live's
Feed.allows) before anything is looked up here. A selection that touches anything
else, a directive other than @skip/@include, or a result with errors, goes the normal
way through strawberry.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final

import orjson
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

logger = logging.getLogger(__name__)

# Types whose fields are plain attributes of a value built from the event alone: no
# resolver, no argument, no context, no permission (tests/graph/test_shared_delivery.py
# checks the schema still says so).
VIEWER_INDEPENDENT: Final = frozenset({"Reading", "MetricValue", "DeviceStatusUpdate"})
_DIRECTIVES: Final = frozenset({"skip", "include"})
_PLANS: Final = 256  # distinct (document, operation, variables that matter) per process
_RESULTS: Final = 4096  # encoded (event, plan) results kept; subscribers lag a little


@dataclass(frozen=True, slots=True)
class DirectSocket:
    """A WebSocket operation's way out past strawberry: its text sender and envelope."""

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
    ) -> DirectSocket:
        head = f'{{"id":{json.dumps(operation_id)},"type":"{message_type}","payload":'
        return cls(send_text, head, query, operation_name, variables)

    async def send(self, payload: str) -> None:
        await self.send_text(f"{self.head}{payload}}}")


# Set by the WebSocket handlers (api.ws_protocols) in each operation's own task.
direct_socket: ContextVar[DirectSocket | None] = ContextVar("direct_socket", default=None)


class SharedPlan:
    """One selection of a viewer-independent subscription, executable on any event."""

    __slots__ = ("executor", "key")

    def __init__(self, key: tuple[Any, ...], executor: Executor[Any]) -> None:
        self.key = key
        self.executor = executor

    def payload[E](self, event: E, convert: Callable[[E], object]) -> str | None:
        """The encoded `next` payload of `event` (`convert` makes its GraphQL value when
        it is not cached yet); None when it must go through strawberry."""
        return _results.get(event, self, convert)


class _Results:
    """Encoded payloads by (event, plan): computed by the first subscriber that asks."""

    def __init__(self, size: int) -> None:
        self._size = size
        # (id(event), plan key) -> (event, payload); the event is kept so its id
        # cannot be reused while the entry lives.
        self._entries: OrderedDict[tuple[int, tuple[Any, ...]], tuple[object, str | None]] = (
            OrderedDict()
        )
        self.executions = 0  # for tests: how many times a selection really ran

    def get[E](self, event: E, plan: SharedPlan, convert: Callable[[E], object]) -> str | None:
        key = (id(event), plan.key)
        entry = self._entries.get(key)
        if entry is not None and entry[0] is event:
            return entry[1]
        payload = self._execute(plan, convert(event))
        self._entries[key] = (event, payload)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
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


_results = _Results(_RESULTS)
_plans: OrderedDict[tuple[Any, ...], SharedPlan | None] = OrderedDict()


def shared_plan(info: GraphQLResolveInfo[Any], direct: DirectSocket) -> SharedPlan | None:
    """The shared plan of this subscription's selection, or None when it must not share."""
    used = _used_variables(info)
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
    # The schema too: a process may serve more than one (tests build several apps).
    key = (info.schema, direct.query, direct.operation_name, relevant)
    if key in _plans:
        _plans.move_to_end(key)
        return _plans[key]
    plan = _build(key, info.schema, direct)
    _plans[key] = plan
    if len(_plans) > _PLANS:
        _plans.popitem(last=False)
    return plan


def _build(key: tuple[Any, ...], schema: GraphQLSchema, direct: DirectSocket) -> SharedPlan | None:
    document: DocumentNode = parse(direct.query)
    # No context: a selection that reached for the viewer would fail, not leak.
    executor = Executor.build(
        schema,
        document,
        raw_variable_values=direct.variables,
        operation_name=direct.operation_name,
    )
    if isinstance(executor, list):
        logger.debug("no shared plan: %s", executor)
        return None
    return SharedPlan(key, executor)


def _used_variables(info: GraphQLResolveInfo[Any]) -> set[str] | None:
    """Variables the selection below the subscription's field reads; None if it must not
    be shared (a type outside VIEWER_INDEPENDENT, another directive, an argument)."""
    used: set[str] = set()
    parent = info.return_type
    while hasattr(parent, "of_type"):
        parent = parent.of_type
    for node in info.field_nodes:
        if not _directives_allowed(node, used):
            return None
        if not _walk(node.selection_set, getattr(parent, "name", ""), info, used, frozenset()):
            return None
    return used


def _walk(
    selection_set: SelectionSetNode | None,
    type_name: str,
    info: GraphQLResolveInfo[Any],
    used: set[str],
    seen: frozenset[str],
) -> bool:
    if selection_set is None:
        return True
    if type_name not in VIEWER_INDEPENDENT:
        return False
    parent = info.schema.get_type(type_name)
    fields = getattr(parent, "fields", {})
    for selection in selection_set.selections:
        if not _directives_allowed(selection, used):
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
            if selection.selection_set is not None and not _walk(
                selection.selection_set, child.name, info, used, seen
            ):
                return False
        elif isinstance(selection, InlineFragmentNode):
            target = selection.type_condition.name.value if selection.type_condition else type_name
            if not _walk(selection.selection_set, target, info, used, seen):
                return False
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment: FragmentDefinitionNode | None = info.fragments.get(name)
            if fragment is None or name in seen or getattr(selection, "arguments", None):
                return False
            target = fragment.type_condition.name.value
            if not _walk(fragment.selection_set, target, info, used, seen | {name}):
                return False
        else:
            return False
    return True


def _directives_allowed(selection: Node, used: set[str]) -> bool:
    for directive in getattr(selection, "directives", None) or ():
        if directive.name.value not in _DIRECTIVES:
            return False
        used.update(_variables(argument.value for argument in directive.arguments or ()))
    return True


def _variables(values: Iterable[Node]) -> set[str]:
    return {value.name.value for value in values if isinstance(value, VariableNode)}


def shared_executions() -> int:
    """How many selections were executed for sharing so far (tests, diagnostics)."""
    return _results.executions
