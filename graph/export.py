"""Print the schema in SDL: `python -m graph.export > schema.graphql`."""

from __future__ import annotations

from core.settings import ApiSettings
from graph.schema import build_schema


def schema_sdl() -> str:
    """The schema as checked in at the repository root."""
    return build_schema(ApiSettings()).as_str() + "\n"


if __name__ == "__main__":
    print(schema_sdl(), end="")
