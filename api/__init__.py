"""The HTTP process: GraphQL, health and (later) firmware downloads."""
