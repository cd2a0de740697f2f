"""The API keys domain: a user's scoped keys, made, listed and revoked by their owner."""
