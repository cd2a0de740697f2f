"""What the API asks of a WebSocket message before strawberry handles it, and its refusals.

strawberry's handlers index into every message as if it were well formed: a JSON array
or number, an id that is not a string, or a payload that is not an object raises
TypeError out of the ASGI app (the socket drops without a close frame and the error is
logged as a crash), or fails the operation's task with nothing said to the client.
`well_formed` checks a message's shape first: graphql-transport-ws then closes the
connection with 4400, as it does for every other invalid message; legacy graphql-ws
ignores it, as it ignores unparsable JSON.

strawberry's refusal of a subscription over the per-connection limit gets the
contract's code (RATE_LIMITED): it carried no code at all. Operations are limited per
user too, across the user's sockets (graph.sessions), with the same answer.

The handlers that apply these are strawberry's own, subclassed in live.compat (they
override its internals).
"""

from __future__ import annotations

from typing import Any, Final

from graph.errors import RATE_LIMITED

# strawberry's message when a connection already has max_subscriptions_per_connection.
SUBSCRIPTION_LIMIT_MESSAGE: Final = "Subscription limit reached"
USER_LIMIT_MESSAGE: Final = "Subscription limit per user reached"


def user_limit_error() -> dict[str, Any]:
    """The error of an operation over its user's quota (graph.sessions)."""
    return {"message": USER_LIMIT_MESSAGE, "extensions": {"code": RATE_LIMITED}}


def code_limit_error(error: object) -> None:
    """Give strawberry's per-connection limit error the contract's code, in place."""
    if (
        isinstance(error, dict)
        and error.get("message") == SUBSCRIPTION_LIMIT_MESSAGE
        and "extensions" not in error
    ):
        error["extensions"] = {"code": RATE_LIMITED}


def _operation_well_formed(message: dict[str, Any]) -> bool:
    payload = message.get("payload")
    return (
        isinstance(message.get("id"), str)
        and isinstance(payload, dict)
        and isinstance(payload.get("query"), str)
        and isinstance(payload.get("variables"), dict | None)
        and isinstance(payload.get("operationName"), str | None)
        and isinstance(payload.get("extensions"), dict | None)
    )


def well_formed(message: object, *, start: str, stop: str) -> bool:
    """Whether strawberry can handle `message` (the `start`/`stop` types of a protocol)."""
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return False
    if message["type"] == start:
        return _operation_well_formed(message)
    if message["type"] == stop:
        return isinstance(message.get("id"), str)
    return True
