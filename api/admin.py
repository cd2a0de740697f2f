"""`python -m api.admin create-admin EMAIL`: the operator's way to the first ADMIN.

Outside development nobody becomes ADMIN by registering first (services/accounts.py).
This promotes the user with EMAIL, or creates it as an ADMIN with a password read
from stdin (one line) or, on a terminal, a prompt: never from the command line, where
shell history and `ps` would keep it. Running it again changes nothing.

Exit codes: 0 done (created, promoted or already ADMIN), 1 refused (bad e-mail or
password, the database unreachable), 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from pymongo.errors import PyMongoError

from core.database import open_database
from core.settings import ApiSettings, get_api_settings
from services import accounts
from services.errors import ServiceError

EXIT_OK = 0
EXIT_REFUSED = 1


def read_password() -> str:
    """The new ADMIN's password: a prompt (twice) on a terminal, else stdin's first line."""
    if sys.stdin.isatty():
        password = getpass.getpass("Password for the new ADMIN: ")
        if getpass.getpass("Again: ") != password:
            raise ValueError("the passwords differ")
        return password
    return sys.stdin.readline().rstrip("\r\n")


async def create_admin(email: str, settings: ApiSettings) -> str:
    """What was done for `email` ("created", "promoted", "unchanged")."""
    async with open_database(settings):
        outcome = await accounts.promote_admin(email)
        if outcome is not None:
            return outcome
        await accounts.create_admin(email, read_password(), settings=settings)
        return "created"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.admin", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser(
        "create-admin",
        help="promote EMAIL to ADMIN, or create it (password from stdin or a prompt)",
    )
    create.add_argument("email")
    args = parser.parse_args(argv)
    try:
        outcome = asyncio.run(create_admin(args.email, get_api_settings()))
    except (ServiceError, ValueError) as err:
        message = err.message if isinstance(err, ServiceError) else str(err)
        print(f"refused: {message}", file=sys.stderr)
        return EXIT_REFUSED
    except PyMongoError as err:
        print(f"database unavailable: {err}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"{args.email}: {outcome}" if outcome != "unchanged" else f"{args.email}: already ADMIN")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
