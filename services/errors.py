"""Failures a service reports, each carrying one of the contract's error codes."""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every expected failure; `code` is the contract's extensions.code."""

    code = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unauthenticated(ServiceError):
    code = "UNAUTHENTICATED"

    def __init__(self, message: str = "Authentication required.") -> None:
        super().__init__(message)


class Forbidden(ServiceError):
    code = "FORBIDDEN"

    def __init__(self, message: str = "Not allowed.") -> None:
        super().__init__(message)


class NotFound(ServiceError):
    code = "NOT_FOUND"

    def __init__(self, kind: str) -> None:
        # Same words whether it is missing or somebody else's: never reveal which.
        super().__init__(f"{kind} not found.")


class BadInput(ServiceError):
    code = "BAD_USER_INPUT"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


class Conflict(ServiceError):
    code = "CONFLICT"


class RateLimited(ServiceError):
    code = "RATE_LIMITED"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too many attempts; try again in {retry_after} s.")
        self.retry_after = retry_after


class Unavailable(ServiceError):
    """A dependency (the MQTT broker) is down; nothing was changed. Its message is shown."""

    code = "INTERNAL"


class QuotaExceeded(ServiceError):
    """A per-user quota (devices...) is used up; waiting does not help, deleting does."""

    code = "RATE_LIMITED"


class QueryTimeout(ServiceError):
    """The database ran out of the query's time budget (maxTimeMS): narrow the query."""

    code = "QUERY_TOO_COMPLEX"

    def __init__(self, max_time_ms: int | None = None) -> None:
        limit = f" (limit {max_time_ms} ms)" if max_time_ms is not None else ""
        super().__init__(
            f"The query took too long in the database{limit}; ask for less "
            "(a shorter time range, a smaller page, fewer fields)."
        )
