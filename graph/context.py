"""Per-request (or per-WebSocket) context: the caller, services and DataLoaders."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.types import Info as StrawberryInfo

from core.bus import Bus
from core.settings import Settings
from graph.loaders import Loaders
from graph.metrics import ApiMetrics
from models.accounts import Role, User
from services.accounts import user_from_access_token_subject
from services.broker_identities import DynsecCommands
from services.errors import Forbidden, Unauthenticated
from services.tokens import bearer_token, decode_access_claims


@dataclass(eq=False, slots=True)
class Context:
    """One per HTTP request or WebSocket connection; slotted, as a connection lasts."""

    request: Request | WebSocket
    response: Response | WebSocket | None
    settings: Settings
    redis: Redis
    bus: Bus
    # The broker's admin connection (device identities live there).
    broker: DynsecCommands
    # The API's counters; a context built without them counts into a registry of its own.
    metrics: ApiMetrics = field(default_factory=ApiMetrics)
    # Set by strawberry from the WebSocket connection_init payload.
    connection_params: dict[str, Any] | None = None
    _user: User | None = field(default=None, init=False)
    # When the token that authenticated this context expires (a WebSocket outlives it).
    _expires_at: float | None = field(default=None, init=False)
    _loaders: Loaders | None = field(default=None, init=False)

    @property
    def loaders(self) -> Loaders:
        if self._loaders is None:
            self._loaders = Loaders(batched=self.settings.graphql_dataloaders)
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

    async def authenticate(self) -> User | None:
        """The caller named by the bearer token, None without one; bad tokens raise."""
        if self._user is None:
            token = bearer_token(self._authorization())
            if token is None:
                return None
            claims = decode_access_claims(token, self.settings)
            self._user = await user_from_access_token_subject(claims.user_id)
            self._expires_at = claims.expires_at
            if self.connection_params is not None:
                # Authenticated for the connection's life: its token is not kept that long.
                self.connection_params = {}
        elif self.session_expired():
            raise Unauthenticated("Token expired.")
        return self._user

    def session_expired(self) -> bool:
        """Whether the token this context was authenticated with has expired since."""
        return self._expires_at is not None and time.time() >= self._expires_at

    async def require_user(self) -> User:
        """The authenticated caller, or Unauthenticated."""
        user = await self.authenticate()
        if user is None:
            raise Unauthenticated()
        return user

    async def require_admin(self) -> User:
        """The authenticated caller when it is an ADMIN, or Forbidden."""
        user = await self.require_user()
        if user.role != Role.ADMIN:
            raise Forbidden("This operation requires the ADMIN role.")
        return user


type Info = StrawberryInfo[Context, None]
