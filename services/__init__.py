"""Business rules as plain async functions: transport -> service -> models."""
