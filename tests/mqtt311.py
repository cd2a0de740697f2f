"""A device's minimal MQTT 3.1.1 QoS 1 publisher that can resend with the DUP flag.

RabbitMQ 3.10's MQTT plugin speaks 3.1.1 only. aiomqtt (paho) cannot be told to mark a
publish as a resend; a device that got no PUBACK (its node died) and sends the message
again on another node must, per MQTT 3.1.1 section 3.3.1.1, set DUP. Only CONNECT,
CONNACK, PUBLISH (QoS 1), PUBACK and DISCONNECT: what the cluster tests need.
"""

from __future__ import annotations

import asyncio
import struct
from types import TracebackType
from typing import Self


class MqttGone(Exception):
    """The connection failed, was refused, or no PUBACK came in time."""


def _string(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return struct.pack("!H", len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    length = bytearray()
    remaining = len(body)
    while True:
        byte, remaining = remaining % 128, remaining // 128
        length.append(byte | (0x80 if remaining else 0))
        if not remaining:
            return bytes([first]) + bytes(length) + body


class Publisher311:
    """`async with Publisher311(host, port, ...) as device: await device.publish(...)`."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str,
        username: str,
        password: str,
        timeout: float = 5.0,
    ) -> None:
        self.host, self.port = host, port
        self._client_id, self._username, self._password = client_id, username, password
        self._timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> Self:
        try:
            async with asyncio.timeout(self._timeout):
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
                flags = 0x80 | 0x40 | 0x02  # user name, password, clean session
                body = (
                    _string("MQTT")
                    + bytes([4, flags])
                    + struct.pack("!H", 30)
                    + _string(self._client_id)
                    + _string(self._username)
                    + _string(self._password)
                )
                self._writer.write(_packet(0x10, body))
                first, payload = await self._read()
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as err:
            self.close()
            raise MqttGone(f"connect to {self.port}: {err!r}") from err
        if first >> 4 != 2 or payload[1] != 0:
            self.close()
            raise MqttGone(f"CONNACK refused: {payload!r}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._writer is not None and exc is None:
            try:
                self._writer.write(b"\xe0\x00")
                await self._writer.drain()
            except OSError:
                pass
        self.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    async def _read(self) -> tuple[int, bytes]:
        assert self._reader is not None
        first = (await self._reader.readexactly(1))[0]
        length, shift = 0, 0
        while True:
            byte = (await self._reader.readexactly(1))[0]
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        return first, await self._reader.readexactly(length)

    async def publish(self, topic: str, payload: bytes, *, mid: int, dup: bool = False) -> None:
        """PUBLISH at QoS 1 and wait for its PUBACK; MqttGone when none comes."""
        if self._writer is None:
            raise MqttGone("not connected")
        first = 0x30 | 0x02 | (0x08 if dup else 0)
        try:
            async with asyncio.timeout(self._timeout):
                self._writer.write(
                    _packet(first, _string(topic) + struct.pack("!H", mid) + payload)
                )
                await self._writer.drain()
                while True:
                    kind, body = await self._read()
                    if kind >> 4 == 4 and struct.unpack("!H", body[:2])[0] == mid:
                        return
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as err:
            self.close()
            raise MqttGone(f"publish on {self.port}: {err!r}") from err
