"""Mosquitto's dynamic-security plugin, driven over its MQTT control topic.

Commands are JSON published to `$CONTROL/dynamic-security/v1`; the plugin answers
on `.../response`, one response per command, matched here by `correlationData`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiomqtt

logger = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"


class DynsecError(Exception):
    """The plugin refused a command (its own error text), or did not answer."""

    def __init__(self, command: str, error: str) -> None:
        super().__init__(f"{command}: {error}")
        self.command = command
        self.error = error


class BrokerUnavailable(Exception):
    """The admin connection to the broker could not be made or was lost."""


class BrokerRefused(BrokerUnavailable):
    """The broker refused the login in its CONNACK (unknown client, wrong password or id)."""


class DynamicSecurity:
    """Sends commands over one admin MQTT connection and waits for their answers."""

    def __init__(self, client: aiomqtt.Client, *, timeout: float = 5.0) -> None:
        self._client = client
        self._timeout = timeout
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        # Set once the connection is gone: the holder reconnects, waiters fail at once.
        self.lost = asyncio.Event()

    async def _read_responses(self) -> None:
        try:
            async for message in self._client.messages:
                try:
                    body = json.loads(bytes(message.payload))
                except (TypeError, ValueError):
                    logger.warning("dynsec: unreadable response on %s", message.topic)
                    continue
                for response in body.get("responses", []):
                    future = self._pending.pop(str(response.get("correlationData")), None)
                    if future is not None and not future.done():
                        future.set_result(response)
        except aiomqtt.MqttError as err:
            logger.warning("dynsec: admin connection lost (%s)", err)
        finally:
            self.lost.set()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(BrokerUnavailable("admin connection lost"))

    async def execute(self, *commands: dict[str, Any]) -> list[dict[str, Any]]:
        """Run `commands` in one message; raise DynsecError for the first refused one."""
        responses = await self.execute_tolerant(*commands)
        for response in responses:
            if "error" in response:
                raise DynsecError(str(response.get("command")), str(response["error"]))
        return responses

    async def execute_tolerant(self, *commands: dict[str, Any]) -> list[dict[str, Any]]:
        """Run `commands`; return every response, refusals included (`"error"` key)."""
        if self.lost.is_set():
            raise BrokerUnavailable("admin connection lost")
        loop = asyncio.get_running_loop()
        tagged = []
        futures = []
        for command in commands:
            correlation = uuid.uuid4().hex
            future: asyncio.Future[dict[str, Any]] = loop.create_future()
            self._pending[correlation] = future
            futures.append(future)
            tagged.append({**command, "correlationData": correlation})
        try:
            # QoS 0: a QoS 1 publish whose connection drops waits out aiomqtt's timeout
            # for a PUBACK that never comes; the answers (or `lost`) settle it instead.
            await self._client.publish(CONTROL_TOPIC, json.dumps({"commands": tagged}), qos=0)
            async with asyncio.timeout(self._timeout):
                return list(await asyncio.gather(*futures))
        except aiomqtt.MqttError as err:
            raise BrokerUnavailable(str(err)) from err
        except TimeoutError as err:
            names = ", ".join(str(c.get("command")) for c in commands)
            raise DynsecError(names, "no answer from the dynamic-security plugin") from err
        finally:
            for command in tagged:
                self._pending.pop(command["correlationData"], None)
            for future in futures:
                if future.done() and not future.cancelled():
                    future.exception()  # retrieved: no "never retrieved" log for the rest

    async def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> None:
        """Publish on this connection (its role's ACLs apply); BrokerUnavailable when the
        connection is lost or the broker does not acknowledge."""
        if self.lost.is_set():
            raise BrokerUnavailable("admin connection lost")
        try:
            await self._client.publish(
                topic, payload, qos=qos, retain=retain, timeout=self._timeout
            )
        except aiomqtt.MqttError as err:
            raise BrokerUnavailable(str(err)) from err


@asynccontextmanager
async def connect_dynsec(
    host: str,
    port: int,
    *,
    username: str,
    password: str,
    identifier: str | None = None,
    answer_timeout: float = 5.0,
    control: bool = True,
) -> AsyncIterator[DynamicSecurity]:
    """An admin connection with its response reader running; closed on exit.

    `identifier` is the client id: a client whose dynsec entry binds one must give it.
    `control`: subscribe to the plugin's answers (False: a broker without the plugin,
    where the connection only publishes; its reader still notices the connection lost)."""
    connected = False
    try:
        async with aiomqtt.Client(
            host,
            port,
            username=username,
            password=password,
            identifier=identifier,
            timeout=answer_timeout,
        ) as client:
            connected = True
            if control:
                await client.subscribe(RESPONSE_TOPIC, qos=1)
            dynsec = DynamicSecurity(client, timeout=answer_timeout)
            reader = asyncio.create_task(dynsec._read_responses())
            try:
                yield dynsec
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
    except aiomqtt.MqttCodeError as err:
        if not connected:
            raise BrokerRefused(str(err)) from err
        raise BrokerUnavailable(str(err)) from err
    except aiomqtt.MqttError as err:
        raise BrokerUnavailable(str(err)) from err
