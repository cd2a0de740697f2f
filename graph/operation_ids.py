"""An id (and the name) of every GraphQL operation, for the records it logs."""

from __future__ import annotations

from collections.abc import Iterator

from strawberry.extensions import SchemaExtension

from core.logging import new_id, operation_id, operation_name


class OperationIds(SchemaExtension):
    """Sets core.logging's operation_id for the whole operation, and its name once parsed.

    A subscription is one operation however many events it streams. Values are set
    back, not reset by token: a stream may be finalised in another context.
    """

    def on_operation(self) -> Iterator[None]:
        previous = operation_id.get(), operation_name.get()
        operation_id.set(new_id())
        try:
            yield
        finally:
            operation_id.set(previous[0])
            operation_name.set(previous[1])

    def on_validate(self) -> Iterator[None]:
        # The document is parsed by now, so the name of an unnamed request is known.
        operation_name.set(self.execution_context.operation_name)
        yield
