"""GraphQL types of device metadata (tags, attributes, location) and devices(filter)."""

from __future__ import annotations

from typing import Any, Self

import strawberry

from models.devices import DeviceStatus
from models.devices import Location as LocationDocument
from services.device_metadata import KEEP, Keep, LocationParts
from services.device_search import DeviceFilter as DeviceFilterSpec

ATTRIBUTES_DESCRIPTION = (
    "Free JSON object kept by the platform, never sent to the device (docs/devices.md)."
)


def kept(value: Any) -> Any:
    """A left-out input field (UNSET) as the services' KEEP; null and values as they are."""
    return KEEP if value is strawberry.UNSET else value


@strawberry.type(description="WGS 84 degrees; what the dashboards' map widget places.")
class Location:
    latitude: float
    longitude: float

    @classmethod
    def from_document(cls, location: LocationDocument) -> Self:
        return cls(latitude=location.latitude, longitude=location.longitude)


@strawberry.input(description="Both numbers set the location, both null clear it.")
class LocationInput:
    latitude: float | None = strawberry.field(
        default=strawberry.UNSET, description="-90..90; left out with longitude: unchanged."
    )
    longitude: float | None = strawberry.field(default=strawberry.UNSET, description="-180..180.")

    def parts(self) -> LocationParts:
        return LocationParts(latitude=kept(self.latitude), longitude=kept(self.longitude))


def location_change(value: LocationInput | None) -> LocationParts | Keep | None:
    """`input.location` for the services: left out, null (clear) or its parts."""
    if value is strawberry.UNSET:
        return KEEP
    return value.parts() if value is not None else None


@strawberry.input(description="Every filter is optional; they combine with AND.")
class DeviceFilter:
    tag: str | None = strawberry.field(default=None, description="Has this tag (exact).")
    type: str | None = None
    status: DeviceStatus | None = None
    search: str | None = strawberry.field(
        default=None,
        description="Case-insensitive prefix of the name or of a word in it.",
    )
    organization_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="Not served yet (organizations): any id answers NOT_FOUND.",
    )

    def to_spec(self) -> DeviceFilterSpec:
        return DeviceFilterSpec(
            tag=self.tag,
            type=self.type,
            status=self.status,
            search=self.search,
            organization_id=self.organization_id,
        )
