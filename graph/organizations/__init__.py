"""Organizations: members and their roles (docs/access.md)."""
