"""`python -m api.broker reconcile`: make the broker's identities match MongoDB, once.

The API does the same at start-up and whenever its admin connection comes back;
this is for operators (a restored broker, a cron job). Exit code 0 on success.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from pymongo.errors import PyMongoError

from core.database import open_database
from core.dynsec import BrokerUnavailable, DynsecError, connect_dynsec
from core.logging import configure_logging
from core.settings import ApiSettings, get_api_settings
from services.broker_reconcile import ReconcileReport, reconcile


async def run_reconcile(settings: ApiSettings) -> ReconcileReport:
    """One reconcile against the configured broker and database."""
    password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else ""
    report: ReconcileReport | None = None
    try:
        async with (
            open_database(settings),
            connect_dynsec(
                settings.mqtt_host,
                settings.mqtt_port,
                username=settings.mqtt_username or "",
                password=password,
            ) as dynsec,
        ):
            report = await reconcile(dynsec, settings)
    except BrokerUnavailable:
        # Changing a role the admin holds (the `iot-api` role older versions granted it)
        # closes this connection; the work is done.
        if report is None:
            raise
    return report


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the subcommand; the exit code."""
    parser = argparse.ArgumentParser(prog="python -m api.broker", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("reconcile", help="make the broker's clients match the devices")
    parser.parse_args(argv)
    settings = get_api_settings()
    configure_logging(settings, service="api.broker")
    if settings.broker_identities != "dynsec":
        print(
            "reconcile: nothing to do with BROKER_IDENTITIES="
            f"{settings.broker_identities} (the broker asks /broker/auth/... for every "
            "login; no identity lives in it)",
            file=sys.stderr,
        )
        return 0
    try:
        report = asyncio.run(run_reconcile(settings))
    except (BrokerUnavailable, DynsecError, PyMongoError) as err:
        print(f"reconcile failed: {err}", file=sys.stderr)
        return 1
    print(
        f"reconciled: {report.devices_created} devices created, "
        f"{report.devices_repaired} repaired, {report.devices_removed} removed, "
        f"{report.roles_fixed} roles fixed, {report.services_fixed} service changes"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
