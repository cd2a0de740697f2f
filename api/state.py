"""What the lifespan opens and every request shares."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from core.broker import BrokerAdmin
from core.bus import Bus
from core.database import Database
from core.settings import Settings
from graph.sessions import UserSessions


@dataclass(frozen=True, slots=True)
class AppState:
    settings: Settings
    database: Database
    redis: Redis
    bus: Bus
    broker: BrokerAdmin
    # The process's WebSockets by user (quotas; closed when a user's session is revoked).
    sessions: UserSessions
