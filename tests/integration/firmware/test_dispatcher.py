"""Dispatch claims are atomic: several API processes may run the dispatcher at once."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta

from beanie import PydanticObjectId

from firmware import rollouts
from models.accounts import utcnow
from models.firmware import FirmwareUpdate
from tests.client import Api
from tests.factories import admin_and_user, create_device
from tests.integration.firmware.helpers import rollout_until, start, states, uploaded


async def test_concurrent_claims_give_each_slot_and_device_to_one_dispatcher(api: Api) -> None:
    admin, _ = await admin_and_user(api)
    devices = [await create_device(api, admin, name=f"d{n}") for n in range(5)]
    firmware = await uploaded(api, admin, os.urandom(1000))
    # One a minute: the API's own dispatcher takes at most the first device now.
    created = await start(api, admin, firmware["id"], [d.id for d in devices], devicesPerMinute=1)
    update = await FirmwareUpdate.get(PydanticObjectId(created["id"]))
    assert update is not None
    later = utcnow() + timedelta(minutes=2)  # every slot due by then: one claimer wins it
    slots = await asyncio.gather(*[rollouts.claim_dispatch(later) for _ in range(10)])
    assert [slot.id for slot in slots if slot is not None] == [update.id]
    claims = await asyncio.gather(*[rollouts.claim_next_target(update, later) for _ in range(20)])
    claimed = [target.device_id for target in claims if target is not None]
    assert len(claimed) == len(set(claimed))
    assert len(claimed) in {4, 5}  # the API's dispatcher may have offered the first
    final = await rollout_until(
        api, admin, created["id"], lambda u: set(states(u).values()) == {"DISPATCHED"}
    )
    assert len(final["devices"]) == 5
