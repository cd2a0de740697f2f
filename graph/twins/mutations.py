"""Mutations of the twin domain."""

from __future__ import annotations

import strawberry
from strawberry.scalars import JSON

from graph.context import Info
from graph.twins.types import DeviceTwin
from services import twins


@strawberry.type
class TwinMutation:
    @strawberry.mutation(
        description="Merge a JSON merge patch (RFC 7396: null removes a key) into the "
        "device's desired state and send the new document to the device. "
        "expectedVersion: CONFLICT unless it is the current version."
    )
    async def update_desired_state(
        self,
        info: Info,
        device_id: strawberry.ID,
        patch: JSON,
        expected_version: int | None = None,
    ) -> DeviceTwin:
        viewer = await info.context.require_user()
        twin = await twins.update_desired(
            viewer,
            device_id,
            patch,
            expected_version=expected_version,
            settings=info.context.settings,
            publisher=info.context.broker,
            sink=info.context.bus,
        )
        return DeviceTwin.from_twin(twin)
