"""Wrong passwords lock out the (e-mail, address) pair that sent them, not the account."""

from __future__ import annotations

import asyncio

from core.settings import Settings
from tests.factories import PASSWORD, register, unique_email
from tests.integration.security.proxied import code_of, from_client, login, proxied_api, retry_after

ATTACKER = "198.51.100.66"
OWNER = "198.51.100.7"
GUESSES = 20


async def test_login_admin_guessed_from_other_address_still_succeeds(settings: Settings) -> None:
    allowance = settings.login_failures_per_email
    async with proxied_api(settings, LOGIN_LOCKOUT_SECONDS="4") as api:
        admin = await register(api, unique_email("admin"))
        assert admin.role == "ADMIN"
        answers = [
            await login(api, admin.email, f"guess {n}", from_client(ATTACKER))
            for n in range(GUESSES)
        ]
        owner = await login(api, admin.email, PASSWORD, from_client(OWNER))
        codes = [code_of(answer) for answer in answers]
        assert codes == ["UNAUTHENTICATED"] * allowance + ["RATE_LIMITED"] * (GUESSES - allowance)
        assert code_of(owner) is None
        assert owner["data"]["login"]["user"]["id"] == admin.user_id

        # The attacker's address waits longer after each lockout.
        first = retry_after(answers[allowance])
        await asyncio.sleep(first + 0.5)
        after_wait = await login(api, admin.email, "one more guess", from_client(ATTACKER))
        again = await login(api, admin.email, "and another", from_client(ATTACKER))
        # Even the right password waits out the lockout from that address.
        right = await login(api, admin.email, PASSWORD, from_client(ATTACKER))
    assert code_of(after_wait) == "UNAUTHENTICATED"
    assert code_of(again) == "RATE_LIMITED"
    assert retry_after(again) > first
    assert code_of(right) == "RATE_LIMITED"
