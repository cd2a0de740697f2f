"""The audit log domain: who did what security-relevant thing (docs/access.md#audit-log)."""
