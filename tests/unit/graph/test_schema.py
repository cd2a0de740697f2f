"""schema.graphql is the code's schema, and the contract's operations validate against it."""

from __future__ import annotations

import re

import pytest
from graphql import build_schema, parse, validate

from graph.export import schema_sdl
from tests.contract import OPERATIONS, ROOT, SHARED_OPERATIONS, operations

# Contract operations this codebase serves; each must validate and be executed by a test.
SERVED = {
    "Register",
    "Login",
    "Refresh",
    "Logout",
    "Me",
    "Users",
    "User",
    "UpdateUser",
    "CreateDevice",
    "Devices",
    "Device",
    "UpdateDevice",
    "DeleteDevice",
    "RotateDeviceCredentials",
    "VerifyDeviceToken",
    "Readings",
    "Aggregate",
    "ReadingAdded",
    "DeviceStatusChanged",
    "CreateDashboard",
    "Dashboards",
    "UpdateDashboard",
    "DeleteDashboard",
    "CreateAlertRule",
    "AlertRules",
    "DeleteAlertRule",
    "Alerts",
    "AcknowledgeAlert",
    "AlertRaised",
    "UploadFirmware",
    "Firmwares",
    "FirmwareSigningKey",
    "DeleteFirmware",
    "StartFirmwareUpdate",
    "FirmwareUpdate",
    "CancelFirmwareUpdate",
    "FirmwareUpdateProgress",
    "UpdateDeviceMetadata",
    "FindDevices",
    "DeviceLogs",
    "DeviceLogAdded",
    "DeviceTwin",
    "UpdateDesiredState",
    "TwinChanged",
    "CreateApiKey",
    "ApiKeys",
    "RevokeApiKey",
    "AuditLog",
    "SetRetention",
    "SendCommand",
    "Commands",
    "CancelCommand",
    "CommandUpdated",
    "RequestPasswordReset",
    "ResetPassword",
    "VerifyEmail",
    "SetNotificationPreferences",
    "CreateOrganization",
    "Organizations",
    "AddMember",
    "RemoveMember",
    "CreateOrgDevice",
}
# Not served yet, by the issue that brings them.
PENDING: dict[str, int] = {}


def test_export_schema_file_is_current() -> None:
    checked_in = (ROOT / "schema.graphql").read_text()
    assert checked_in == schema_sdl(), "schema.graphql is stale: run `make schema`"


def test_contract_copy_matches_shared_contract() -> None:
    if not SHARED_OPERATIONS.exists():
        pytest.skip("no ../shared/contract beside this checkout")
    assert OPERATIONS.read_text() == SHARED_OPERATIONS.read_text()
    shared_devices = SHARED_OPERATIONS.with_name("devices.md")
    assert (ROOT / "contract" / "devices.md").read_text() == shared_devices.read_text()


def test_classify_contract_operations_every_one_known() -> None:
    assert set(operations()) == SERVED | set(PENDING)
    assert not SERVED & set(PENDING)


@pytest.mark.parametrize("name", sorted(SERVED))
def test_validate_contract_operation_against_schema(name: str) -> None:
    schema = build_schema((ROOT / "schema.graphql").read_text())
    errors = validate(schema, parse(operations()[name]))
    assert errors == [], f"{name}: {[e.message for e in errors]}"


@pytest.mark.parametrize("name", sorted(SERVED))
def test_execute_contract_operation_somewhere_in_tests(name: str) -> None:
    sources = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    assert re.search(rf"""op\(\s*["']{name}["']\s*\)""", sources), (
        f"no test executes the contract operation {name}"
    )
