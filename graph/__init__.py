"""The GraphQL surface: one subpackage per domain, composed in graph.schema."""
