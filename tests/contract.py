"""The client contract's operations, by name, from contract/operations.graphql."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from graphql import OperationDefinitionNode, parse, print_ast

ROOT = Path(__file__).resolve().parents[1]
OPERATIONS = ROOT / "contract" / "operations.graphql"
# The steering copy, beside the clone; the checked-in one must match it.
SHARED_OPERATIONS = ROOT.parent / "shared" / "contract" / "operations.graphql"


@cache
def operations() -> dict[str, str]:
    """Operation name -> its document, as the contract writes it."""
    document = parse(OPERATIONS.read_text())
    return {
        node.name.value: print_ast(node)
        for node in document.definitions
        if isinstance(node, OperationDefinitionNode) and node.name is not None
    }


def op(name: str) -> str:
    """One contract operation's document."""
    return operations()[name]
