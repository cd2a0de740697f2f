"""Per-request (or per-WebSocket) context: the caller, services and DataLoaders."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.types import Info as StrawberryInfo

from core.settings import ApiSettings
from graph.loaders import Loaders
from graph.metrics import ApiMetrics
from graph.sessions import UserSessions
from live.bus import Bus
from live.delivery import LiveDelivery
from models.accounts import User
from models.api_keys import ApiKeyScope
from services import audit
from services.accounts import user_from_access_token_subject
from services.api_keys import ApiKeyGrant, authenticate_api_key, is_api_key, revoked_key_name
from services.broker_identities import DynsecCommands
from services.commands import Dispatch
from services.errors import Unauthenticated
from services.pagination import clamp_page_size
from services.tokens import bearer_token, decode_access_claims


@dataclass(eq=False, slots=True)
class Context:
    """One per HTTP request or WebSocket connection; slotted, as a connection lasts."""

    request: Request | WebSocket
    response: Response | WebSocket | None
    settings: ApiSettings
    redis: Redis
    bus: Bus
    # The broker's admin connection (device identities live there).
    broker: DynsecCommands
    # The process's live delivery state (live.delivery), opened in the lifespan.
    live: LiveDelivery
    # The API's counters; a context built without them counts into a registry of its own.
    metrics: ApiMetrics = field(default_factory=ApiMetrics)
    # Set by strawberry from the WebSocket connection_init payload.
    connection_params: dict[str, Any] | None = None
    # This process's WebSockets by user (quotas, revocation); None for a bare context.
    sessions: UserSessions | None = None
    # Set when the caller authenticated with an API key: its scopes limit every operation
    # (graph.api_key_scopes).
    api_key: ApiKeyGrant | None = field(default=None, init=False)
    # This process's command dispatcher (services.command_dispatch); None for a bare context.
    commands: Dispatch | None = None
    _user: User | None = field(default=None, init=False)
    # time.monotonic() when the user was read: a revocation announced later wins.
    _authenticated_at: float = field(default=0.0, init=False)
    # When the token that authenticated this context expires (a WebSocket outlives it).
    _expires_at: float | None = field(default=None, init=False)
    _loaders: Loaders | None = field(default=None, init=False)

    def page_size(self, first: int | None) -> int:
        """`first` as a page size: PAGE_SIZE_DEFAULT when omitted, capped at PAGE_SIZE_MAX
        (services.pagination.clamp_page_size; a negative one is BAD_USER_INPUT)."""
        return clamp_page_size(
            first,
            default=self.settings.page_size_default,
            maximum=self.settings.page_size_max,
        )

    @property
    def loaders(self) -> Loaders:
        if self._loaders is None:
            self._loaders = Loaders()
        return self._loaders

    @property
    def client_address(self) -> str:
        """The caller's address, for rate limits: uvicorn's, which takes X-Forwarded-For
        into account only from a trusted proxy (FORWARDED_ALLOW_IPS)."""
        client = self.request.client
        return client.host if client else "unknown"

    def _authorization(self) -> str | None:
        if self.connection_params is not None:
            value = self.connection_params.get("authorization")
            if value is None:
                value = self.connection_params.get("Authorization")
            return value if isinstance(value, str) else None
        return self.request.headers.get("authorization")

    def carries_api_key(self) -> bool:
        """Whether the request's bearer token is an API key (not yet authenticated)."""
        if self._user is not None:
            return False
        header = self._authorization()
        _scheme, _, token = (header or "").strip().partition(" ")
        return is_api_key(token.strip())

    async def authenticate(self) -> User | None:
        """The caller named by the bearer token (an access token or an API key), None
        without one; bad tokens raise, and so does a key without a GraphQL scope."""
        if self._user is None:
            token = bearer_token(self._authorization())
            if token is None:
                return None
            self._authenticated_at = time.monotonic()
            if is_api_key(token):
                # Looked up on every request (a revoked key fails at once); a WebSocket
                # is closed on revocation (graph.sessions).
                grant = await authenticate_api_key(token, ApiKeyScope.READ, settings=self.settings)
                self.api_key, self._user = grant, grant.user
                audit.current_api_key.set(grant.key_id)
                self._expires_at = grant.expires_at.timestamp() if grant.expires_at else None
            else:
                claims = decode_access_claims(token, self.settings)
                self._user = await user_from_access_token_subject(
                    claims.user_id, session_version=claims.session_version
                )
                self._expires_at = claims.expires_at
            if self.connection_params is not None:
                # Authenticated for the connection's life: its token is not kept that long.
                self.connection_params = {}
        elif self.session_expired():
            raise Unauthenticated("Token expired.")
        return self._user

    def open_socket(self, user: User) -> None:
        """Count this WebSocket as one of `user`'s (RateLimited over the quota)."""
        if self.sessions is not None and isinstance(self.request, WebSocket):
            key = revoked_key_name(self.api_key.key_id) if self.api_key is not None else None
            self.sessions.open(
                str(user.id), self.request, authenticated_at=self._authenticated_at, key=key
            )

    def close_socket(self) -> None:
        """Forget this WebSocket (closed)."""
        user, request = self._user, self.request
        if self.sessions is not None and user is not None and isinstance(request, WebSocket):
            self.sessions.close(str(user.id), request)

    def operation_allowed(self) -> bool:
        """Whether this WebSocket's user may start one more operation (per-user quota)."""
        if self.sessions is None or self._user is None:
            return True
        return self.sessions.operation_allowed(str(self._user.id))

    def track_operation(self, task: asyncio.Task[None]) -> None:
        """Count an operation of this WebSocket's user until its task is done."""
        if self.sessions is not None and self._user is not None:
            self.sessions.track_operation(str(self._user.id), task)

    def session_expired(self) -> bool:
        """Whether the token this context was authenticated with has expired since."""
        return self._expires_at is not None and time.time() >= self._expires_at

    async def require_user(self) -> User:
        """The authenticated caller, or Unauthenticated."""
        user = await self.authenticate()
        if user is None:
            raise Unauthenticated()
        return user


type Info = StrawberryInfo[Context, None]
