"""graph.api_key_scopes.root_fields: the root fields an operation runs, fragments expanded."""

from __future__ import annotations

from graphql import parse

from graph.api_key_scopes import root_fields


def test_root_fields_plain_and_aliased() -> None:
    document = parse("mutation { a: createDevice { x } logout }")
    assert root_fields(document, None) == ["createDevice", "logout"]


def test_root_fields_through_fragments_and_inline_fragments() -> None:
    document = parse(
        "mutation M { ...F ... on Mutation { createApiKey } } "
        "fragment F on Mutation { logout ...G } fragment G on Mutation { updateUser ...F }"
    )
    assert root_fields(document, "M") == ["logout", "updateUser", "createApiKey"]


def test_root_fields_named_operation_chosen() -> None:
    document = parse("query Q { me } mutation M { logout }")
    assert root_fields(document, "M") == ["logout"]
    assert root_fields(document, "Q") == ["me"]
    assert root_fields(document, "X") == []
