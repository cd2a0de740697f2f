"""Nobody becomes ADMIN by racing to register first in production: the command line
makes the first ADMIN, and registration can be closed."""

from __future__ import annotations

import asyncio
import os
import sys

from core.settings import Settings
from models.accounts import Role, User
from tests.client import Api
from tests.contract import op
from tests.factories import PASSWORD, register, unique_email
from tests.net import ROOT
from tests.servers import production_settings, serve_api, with_settings


def command_env(settings: Settings) -> dict[str, str]:
    """The environment an operator gives `python -m api.admin`: the same database."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "ENVIRONMENT": settings.environment,
        "MONGODB_URL": settings.mongodb_url,
        "MONGODB_DATABASE": settings.mongodb_database,
        "JWT_SECRET": settings.jwt_secret.get_secret_value(),
        "DEVICE_CREDENTIAL_KEY": settings.device_credential_key.get_secret_value(),
        "ARGON2_TIME_COST": str(settings.argon2_time_cost),
        "ARGON2_MEMORY_COST_KIB": str(settings.argon2_memory_cost_kib),
    }


async def create_admin(
    settings: Settings, *args: str, stdin: str = PASSWORD + "\n"
) -> tuple[int, str]:
    """Run the command as an operator would; (exit code, its stdout and stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "api.admin",
        *args,
        cwd=ROOT,
        env=command_env(settings),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(stdin.encode()), timeout=60)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def login(api: Api, email: str, password: str = PASSWORD) -> dict[str, object]:
    result = await api.execute(op("Login"), {"email": email, "password": password})
    user: dict[str, object] = result.data["login"]["user"]
    return user


async def test_register_first_user_production_is_user(settings: Settings) -> None:
    async with serve_api(production_settings(settings)) as url, Api(url) as api:
        first = await register(api)
        second = await register(api)

    assert (first.role, second.role) == ("USER", "USER")


async def test_create_admin_command_first_admin_logs_in(settings: Settings) -> None:
    production = production_settings(settings)
    email = unique_email("operator")

    code, output = await create_admin(production, "create-admin", email)

    assert code == 0, output
    assert PASSWORD not in output
    async with serve_api(production) as url, Api(url) as api:
        assert (await login(api, email))["role"] == "ADMIN"
        # And the ADMIN can administer: ADMIN-only operations answer.
        token = (await api.execute(op("Login"), {"email": email, "password": PASSWORD})).data[
            "login"
        ]["accessToken"]
        users = await api.execute(op("Users"), {"first": 5}, token=token)
        assert users.data["users"]["totalCount"] == 1


async def test_create_admin_command_promotes_existing_user_idempotent(
    settings: Settings,
) -> None:
    production = production_settings(settings)
    async with serve_api(production) as url, Api(url) as api:
        user = await register(api)
        assert user.role == "USER"

        first = await create_admin(production, "create-admin", user.email, stdin="")
        again = await create_admin(production, "create-admin", user.email, stdin="")

        assert (first[0], again[0]) == (0, 0), (first, again)
        assert (await login(api, user.email))["role"] == "ADMIN"
    assert await User.find(User.role == Role.ADMIN).count() == 1


async def test_create_admin_command_bad_input_exit_codes(settings: Settings) -> None:
    production = production_settings(settings)

    short, short_output = await create_admin(
        production, "create-admin", unique_email(), stdin="short\n"
    )
    bad_email, _ = await create_admin(production, "create-admin", "not-an-email")
    # The password is never an argument: it would land in shell history and `ps`.
    in_argv, _ = await create_admin(production, "create-admin", unique_email(), PASSWORD)

    assert short == 1, short_output
    assert bad_email == 1
    assert in_argv == 2
    assert await User.find().count() == 0


async def test_register_closed_forbidden(settings: Settings) -> None:
    closed = with_settings(settings, registration_open=False)
    async with serve_api(closed) as url, Api(url) as api:
        result = await api.execute(op("Register"), {"email": unique_email(), "password": PASSWORD})

    assert result.code == "FORBIDDEN"
    assert "closed" in result.message.lower()
    assert await User.find().count() == 0
