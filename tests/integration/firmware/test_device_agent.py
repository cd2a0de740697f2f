"""The device side (simulator.ota.OtaAgent) against the real download endpoint."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.signing import Signer
from simulator.ota import Offer, OtaAgent
from tests.client import Api
from tests.contract import op
from tests.factories import Session, admin_and_user, create_device
from tests.integration.firmware.helpers import rollout_until, start, states, uploaded


async def agent_and_offer(
    api: Api, admin: Session, image: bytes, **options: Any
) -> tuple[OtaAgent, Offer]:
    device = await create_device(api, admin)
    firmware = await uploaded(api, admin, image, version="5.0.0")
    update = await start(api, admin, firmware["id"], [device.id])
    await rollout_until(api, admin, update["id"], lambda u: states(u)[device.id] == "DISPATCHED")
    key = await api.execute(op("FirmwareSigningKey"), token=admin.access_token)
    agent = OtaAgent(
        token=device.token,
        api_url=api.base_url,
        public_key=key.data["firmwareSigningKey"],
        http=api.http,
        install_seconds=0,
        **options,
    )
    offer = Offer(
        update_id=update["id"],
        version="5.0.0",
        url=f"/firmware/{firmware['id']}/download",
        size=len(image),
        sha256=hashlib.sha256(image).hexdigest(),
        signature=firmware["signature"],
    )
    return agent, offer


async def test_device_agent_resumes_verifies_and_succeeds(api: Api) -> None:
    admin, _ = await admin_and_user(api)
    image = os.urandom(300_000)
    agent, offer = await agent_and_offer(api, admin, image, interrupt_after=100_000)
    reports: list[dict[str, Any]] = []

    async def publish(report: dict[str, Any]) -> None:
        reports.append(report)

    assert await agent.handle(offer, publish) == "SUCCEEDED"
    assert agent.resumed_at and agent.resumed_at[0] >= 100_000
    assert agent.firmware_version == "5.0.0"
    assert [r["state"] for r in reports if r["state"] != "DOWNLOADING"] == [
        "VERIFYING", "VERIFYING", "INSTALLING", "INSTALLING", "SUCCEEDED",
    ]  # fmt: skip
    downloading = [r["progress"] for r in reports if r["state"] == "DOWNLOADING"]
    assert downloading == sorted(downloading) and downloading[-1] == 100
    assert all(r["updateId"] == offer.update_id for r in reports)
    # The retained offer seen again after a reconnect is not installed twice.
    assert await agent.handle(offer, publish) == "IGNORED"


async def test_device_agent_refuses_forged_signature(api: Api) -> None:
    admin, _ = await admin_and_user(api)
    image = os.urandom(5000)
    agent, offer = await agent_and_offer(api, admin, image)
    forged = Signer(Ed25519PrivateKey.generate()).sign_digest(hashlib.sha256(image).digest())
    reports: list[dict[str, Any]] = []

    async def publish(report: dict[str, Any]) -> None:
        reports.append(report)

    assert await agent.handle(replace(offer, signature=forged), publish) == "FAILED"
    assert reports[-1] == {
        "updateId": offer.update_id,
        "state": "FAILED",
        "progress": 0,
        "error": "verification failed: bad signature",
    }
    assert agent.firmware_version is None


def test_offer_parse_ignores_cleared_and_unreadable() -> None:
    assert Offer.parse(b"") is None
    assert Offer.parse(b"{not json") is None
    assert Offer.parse(b'{"updateId": "x"}') is None
