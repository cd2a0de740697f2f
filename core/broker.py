"""The API's one admin connection to the broker, held for the life of the process.

It logs in as the process's own identity (its username is also its bound client id).
While that identity does not exist (first start, or a broker that lost its state),
the bootstrap admin (MQTT_USERNAME) connects only to run `on_connect`, which creates
it; the bootstrap admin stays unbound for operators and the other API processes.

With `dynsec=False` (BROKER_IDENTITIES=http: RabbitMQ, EMQX) the broker keeps no
identities of ours: it asks /broker/auth/... for each login and topic. The connection
then only publishes (commands, desired twin state), and identity commands are answered
as done without being sent, whether or not the broker is reachable: a device is
created, rotated or deleted in MongoDB alone (services/broker_sessions.py closes a
rotated or deleted device's open connections through the broker's management API).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from core.dynsec import BrokerRefused, BrokerUnavailable, DynamicSecurity, connect_dynsec
from core.reconnecting import Reconnecting
from core.settings import CommonSettings

logger = logging.getLogger(__name__)

type OnConnect = Callable[[DynamicSecurity], Awaitable[object]]


class BrokerAdmin(Reconnecting):
    """Dynamic-security commands over one admin connection that reconnects with backoff.

    While the broker is away, commands raise BrokerUnavailable at once instead of
    waiting; `on_connect` runs after every (re)connection, so a broker that restarted
    with an empty state is repaired as soon as it is back.
    """

    task_name = "broker-admin"
    lost_errors = (BrokerUnavailable,)

    def __init__(
        self,
        settings: CommonSettings,
        *,
        on_connect: OnConnect | None = None,
        identity: tuple[str, str] | None = None,
        dynsec: bool = True,
        startup_wait_seconds: float = 5.0,
    ) -> None:
        super().__init__(startup_wait_seconds=startup_wait_seconds)
        self._settings = settings
        # (username, password) of the process's own dynsec client; None: the bootstrap admin.
        self._identity = identity
        self._bootstrapped = False  # the last attempt created our identity as the admin
        self._on_connect = on_connect
        # Whether the broker has the dynamic-security plugin that keeps our identities.
        self._plugin = dynsec
        self._dynsec: DynamicSecurity | None = None

    @property
    def connected(self) -> bool:
        return self._dynsec is not None and not self._dynsec.lost.is_set()

    def _current(self) -> DynamicSecurity:
        if self._dynsec is None or self._dynsec.lost.is_set():
            raise BrokerUnavailable("no admin connection to the MQTT broker")
        return self._dynsec

    async def execute(self, *commands: dict[str, Any]) -> list[dict[str, Any]]:
        """DynamicSecurity.execute on the current connection (without the plugin: done)."""
        if not self._plugin:
            return _kept_elsewhere(commands)
        return await self._current().execute(*commands)

    async def execute_tolerant(self, *commands: dict[str, Any]) -> list[dict[str, Any]]:
        """DynamicSecurity.execute_tolerant on the current connection (without the
        plugin: done)."""
        if not self._plugin:
            return _kept_elsewhere(commands)
        return await self._current().execute_tolerant(*commands)

    async def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> None:
        """DynamicSecurity.publish on the current connection (as this process's identity)."""
        await self._current().publish(topic, payload, qos=qos, retain=retain)

    async def _bootstrap(self) -> None:
        """As the bootstrap admin: run `on_connect` (which creates our own identity), leave."""
        settings = self._settings
        password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else ""
        async with connect_dynsec(
            settings.mqtt_host,
            settings.mqtt_port,
            username=settings.mqtt_username or "",
            password=password,
        ) as dynsec:
            logger.info("broker: own identity refused; bootstrapping it as the admin")
            await self._run_on_connect(dynsec)

    async def _connect_once(self) -> None:
        settings = self._settings
        if self._identity is None:
            username = settings.mqtt_username or ""
            password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else ""
            identifier = None
        else:
            username, password = self._identity
            identifier = username
        try:
            async with connect_dynsec(
                settings.mqtt_host,
                settings.mqtt_port,
                username=username,
                password=password,
                identifier=identifier,
                control=self._plugin,
            ) as dynsec:
                await self._serve(dynsec)
        except BrokerRefused:
            if self._identity is None or self._bootstrapped or not self._plugin:
                self._bootstrapped = False
                raise  # refused even after the bootstrap: back off
            await self._bootstrap()
            self._bootstrapped = True  # our own identity exists now: try it again
        self._backoff.reset()  # served, or bootstrapped: the next attempt comes soon

    async def _serve(self, dynsec: DynamicSecurity) -> None:
        self._bootstrapped = False
        self._dynsec = dynsec
        logger.info("broker admin connection open (%s)", self._settings.mqtt_host)
        await self._run_on_connect(dynsec)
        if not dynsec.lost.is_set():
            self.ready.set()
        await dynsec.lost.wait()

    async def _run_on_connect(self, dynsec: DynamicSecurity) -> None:
        if self._on_connect is not None:
            try:
                await self._on_connect(dynsec)
            except Exception:  # a failed reconcile must not drop the connection
                logger.exception("broker: on-connect step failed")

    def _forget(self) -> None:
        self._dynsec = None

    def _log_lost(self, err: Exception, delay: float) -> None:
        logger.warning("broker admin connection failed (%s); retry in %.1f s", err, delay)

    def _log_not_ready(self) -> None:
        logger.warning("broker not reachable at start-up; the API runs without it")


def _kept_elsewhere(commands: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """The answers of identity commands for a broker that keeps no identities of ours
    (it asks over HTTP): each done, none sent."""
    return [{"command": command.get("command")} for command in commands]
