"""Queries of the devices domain."""

from __future__ import annotations

import strawberry

from graph.context import Info
from graph.devices.metadata import DeviceFilter
from graph.devices.types import Device
from graph.pagination import Connection
from services import device_search, devices


@strawberry.type
class DeviceQuery:
    @strawberry.field(description="The caller's devices (an ADMIN's: all), newest first.")
    async def devices(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: DeviceFilter | None = None,
    ) -> Connection[Device]:
        viewer = await info.context.require_user()
        size = info.context.page_size(first)
        spec = filter.to_spec() if filter is not None else device_search.DeviceFilter()
        page = await device_search.find_devices(viewer, spec, first=size, after=after)
        return Connection[Device].from_page(page, Device.from_document)

    @strawberry.field
    async def device(self, info: Info, id: strawberry.ID) -> Device:
        viewer = await info.context.require_user()
        return Device.from_document(await devices.get_device(viewer, id))
