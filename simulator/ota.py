"""The device side of an OTA update, as a real device does it (used by the simulator).

Given an offer from devices/{id}/ota (contract/devices.md), an OtaAgent
downloads the image with the device token, resuming with `Range` + `If-Range`
when the connection drops, checks its SHA-256 against the offer and the Ed25519
signature of that digest against the platform's public key, "installs" it, and
reports each step on devices/{id}/ota/progress (QoS 1):
DOWNLOADING (0-100) -> VERIFYING -> INSTALLING -> SUCCEEDED, or FAILED with an error.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import httpx

from firmware.signing import verify_digest

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
REPORT_STEP = 25  # DOWNLOADING progress is reported in steps of this many percent

type Publish = Callable[[dict[str, Any]], Awaitable[None]]


class OtaFailed(Exception):
    """A step failed; the message is the error the device reports."""


@dataclass(frozen=True, slots=True)
class Offer:
    update_id: str
    version: str
    url: str
    size: int
    sha256: str
    signature: str

    @classmethod
    def parse(cls, payload: bytes) -> Offer | None:
        """The offer in a message; None for a cleared (empty) or unreadable one."""
        if not payload:
            return None
        try:
            data = json.loads(payload)
            return cls(
                update_id=str(data["updateId"]),
                version=str(data["version"]),
                url=str(data["url"]),
                size=int(data["size"]),
                sha256=str(data["sha256"]),
                signature=str(data["signature"]),
            )
        except (ValueError, KeyError, TypeError):
            logger.warning("unreadable OTA offer ignored")
            return None


@dataclass(kw_only=True)
class OtaAgent:
    """One device's OTA behaviour; `handle` one offer at a time."""

    token: str  # the device token (createDevice / rotateDeviceCredentials)
    api_url: str  # resolves an offer's relative url
    public_key: str  # firmwareSigningKey
    http: httpx.AsyncClient
    install_seconds: float = 1.0
    fail_rate: float = 0.0  # share of installations that fail on purpose
    interrupt_after: int = 0  # drop the first download after this many bytes (0: never)
    firmware_version: str | None = None
    handled: set[str] = field(default_factory=set)
    resumed_at: list[int] = field(default_factory=list)  # where downloads were resumed

    async def handle(self, offer: Offer, publish: Publish) -> str:
        """Carry out one offer, reporting through `publish`; the final state."""
        if offer.update_id in self.handled:
            return "IGNORED"  # the retained offer, seen again after a reconnect
        self.handled.add(offer.update_id)

        async def report(state: str, progress: int, error: str | None = None) -> None:
            message: dict[str, Any] = {
                "updateId": offer.update_id,
                "state": state,
                "progress": progress,
            }
            if error is not None:
                message["error"] = error
            await publish(message)

        try:
            image = await self.download(offer, report)
            await report("VERIFYING", 0)
            digest = hashlib.sha256(image).digest()
            if digest.hex() != offer.sha256:
                raise OtaFailed("verification failed: SHA-256 does not match the offer")
            if not verify_digest(self.public_key, digest, offer.signature):
                raise OtaFailed("verification failed: bad signature")
            await report("VERIFYING", 100)
            await report("INSTALLING", 0)
            await asyncio.sleep(self.install_seconds / 2)
            await report("INSTALLING", 50)
            await asyncio.sleep(self.install_seconds / 2)
            if random.random() < self.fail_rate:
                raise OtaFailed("installation failed (simulated)")
        except OtaFailed as failure:
            await report("FAILED", 0, str(failure))
            return "FAILED"
        self.firmware_version = offer.version
        await report("SUCCEEDED", 100)
        return "SUCCEEDED"

    async def download(self, offer: Offer, report: Callable[[str, int], Awaitable[None]]) -> bytes:
        """The image, resumed with Range after a dropped connection."""
        url = urljoin(self.api_url.rstrip("/") + "/", offer.url)
        data = bytearray()
        etag: str | None = None
        reported = -REPORT_STEP
        interrupt = self.interrupt_after
        for attempt in range(MAX_ATTEMPTS):
            headers = {"Authorization": f"Bearer {self.token}"}
            if data and etag:
                headers["Range"] = f"bytes={len(data)}-"
                headers["If-Range"] = etag
                self.resumed_at.append(len(data))
            try:
                async with self.http.stream("GET", url, headers=headers) as response:
                    if response.status_code == 200:
                        data.clear()  # the whole image (first try, or If-Range refused)
                    elif response.status_code != 206:
                        raise OtaFailed(f"download refused: HTTP {response.status_code}")
                    etag = response.headers.get("etag")
                    async for block in response.aiter_bytes(64 * 1024):
                        data += block
                        percent = min(100, len(data) * 100 // max(offer.size, 1))
                        if percent >= reported + REPORT_STEP:
                            reported = percent - percent % REPORT_STEP
                            await report("DOWNLOADING", reported)
                        if interrupt and len(data) >= interrupt:
                            interrupt = 0
                            break  # a flaky link: the connection drops mid-body
            except httpx.TransportError as err:
                logger.info("download interrupted (%s); resuming", err)
                await asyncio.sleep(0.2 * (attempt + 1))
            if len(data) >= offer.size:
                break
        if len(data) != offer.size:
            raise OtaFailed(f"download incomplete: {len(data)} of {offer.size} bytes")
        return bytes(data)
