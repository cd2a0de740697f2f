"""What the lifespan opens and every request shares."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from core.broker import BrokerAdmin
from core.database import Database
from core.settings import ApiSettings
from graph.sessions import UserSessions
from ingest.http_intake import HttpIntake
from live.bus import Bus
from live.delivery import LiveDelivery
from services.command_dispatch import CommandDispatcher


@dataclass(frozen=True, slots=True)
class AppState:
    settings: ApiSettings
    database: Database
    redis: Redis
    bus: Bus
    broker: BrokerAdmin
    # Results shared between subscribers, closes in flight (live.delivery).
    live: LiveDelivery
    # The process's WebSockets by user (quotas; closed when a user's session is revoked).
    sessions: UserSessions
    # POST /devices/{id}/telemetry's pipeline and bounds (ingest.http_intake).
    intake: HttpIntake
    # Sends device commands (services.command_dispatch).
    commands: CommandDispatcher
