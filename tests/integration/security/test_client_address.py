"""Rate limits count the real client, whatever it writes in X-Forwarded-For."""

from __future__ import annotations

from core.settings import Settings
from tests.factories import PASSWORD, register, unique_email
from tests.integration.security.proxied import code_of, from_client, login, proxied_api

ATTACKER = "203.0.113.7"


async def test_login_forged_forwarded_for_behind_proxy_rate_limited(settings: Settings) -> None:
    # Behind a trusted proxy that appends the peer's address, an attacker writing a
    # new X-Forwarded-For on every attempt is still one client: the proxy's last entry.
    limit = settings.login_failures_per_address
    async with proxied_api(settings) as api:
        honest = await register(api, unique_email("honest"))
        spread = [
            await login(
                api,
                unique_email("stranger"),
                "wrong password",
                from_client(ATTACKER, forged=f"10.0.0.{n}"),
            )
            for n in range(limit)
        ]
        blocked = await login(api, honest.email, PASSWORD, from_client(ATTACKER, "10.9.9.9"))
        # Another real client is not affected: the header is read, from the proxy.
        elsewhere = await login(api, honest.email, PASSWORD, from_client("203.0.113.8"))
    assert [code_of(body) for body in spread] == ["UNAUTHENTICATED"] * limit
    assert code_of(blocked) == "RATE_LIMITED"
    assert code_of(elsewhere) is None
