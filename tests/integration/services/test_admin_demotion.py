"""ADMINs demoting each other at the same moment leave at least one ADMIN."""

from __future__ import annotations

import asyncio

from beanie import PydanticObjectId

from core.settings import Settings
from models.accounts import Role, User
from services.accounts import update_user
from services.errors import ServiceError
from tests.client import Api
from tests.factories import admin_and_user, register

ADMINS = 6


async def stored(user_id: str) -> User:
    user = await User.get(PydanticObjectId(user_id))
    assert user is not None
    return user


async def demote(viewer: User, target: User, settings: Settings) -> User:
    return await update_user(
        viewer,
        str(target.id),
        email=f"demoted-{target.id}@example.com",
        password=None,
        role=Role.USER,
        settings=settings,
    )


async def test_demote_each_other_at_once_one_admin_stays(api: Api, settings: Settings) -> None:
    first, _ = await admin_and_user(api)
    sessions = [first] + [await register(api) for _ in range(ADMINS - 1)]
    chief = await stored(first.user_id)
    for session in sessions[1:]:
        await update_user(
            chief, session.user_id, email=None, password=None, role=Role.ADMIN, settings=settings
        )
    admins = [await stored(s.user_id) for s in sessions]
    assert {a.role for a in admins} == {Role.ADMIN}

    # Each demotes the next, all at once: every check counts ADMINs before the others
    # have written, so each alone would find another ADMIN left.
    results = await asyncio.gather(
        *(demote(a, admins[(i + 1) % ADMINS], settings) for i, a in enumerate(admins)),
        return_exceptions=True,
    )

    after = [await stored(s.user_id) for s in sessions]
    assert Role.ADMIN in {user.role for user in after}, results
    for i, result in enumerate(results):
        target, original = after[(i + 1) % ADMINS], sessions[(i + 1) % ADMINS]
        if isinstance(result, BaseException):
            assert isinstance(result, ServiceError), result
            assert result.code == "BAD_USER_INPUT", result
            # Refused: nothing of that update stays, the e-mail included.
            assert (target.role, target.email) == (Role.ADMIN, original.email)
        else:
            assert target.role == Role.USER
