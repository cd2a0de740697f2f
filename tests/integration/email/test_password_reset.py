"""Password reset by e-mail: the token works once and for an hour, ends every session
(access tokens, refresh tokens, open WebSockets), and the request never tells whether
an address is known."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from models.accounts import utcnow
from models.email import EmailToken, MailState, OutboxMail
from tests.client import Api
from tests.contract import op
from tests.factories import PASSWORD, create_device, register, unique_email
from tests.integration.accounts.helpers import create_key, with_key
from tests.integration.api.test_websocket import LEGACY_WS, TRANSPORT_WS
from tests.integration.email.helpers import RESET_SUBJECT, reset_token, settled_mails
from tests.integration.graph.test_subscriptions import client
from tests.integration.security.test_revocation import REVOKED_CODE, closed_code, subscribed
from tests.smtp import QUIET_SECONDS, SmtpServer

NEW_PASSWORD = "a brand new passphrase"


async def login(api: Api, email: str, password: str) -> list[str]:
    return (await api.execute(op("Login"), {"email": email, "password": password})).codes


async def test_reset_password_sets_new_password_once(api: Api, smtp_server: SmtpServer) -> None:
    user = await register(api)
    token = await reset_token(api, smtp_server, user.email)
    mail = smtp_server.to(user.email, RESET_SUBJECT)[-1]
    assert "http://console.test/console/reset?token=" in mail.text

    reset = await api.execute(op("ResetPassword"), {"token": token, "password": NEW_PASSWORD})
    again = await api.execute(op("ResetPassword"), {"token": token, "password": "x" * 20})

    assert reset.data == {"resetPassword": True}
    assert again.codes == ["UNAUTHENTICATED"]
    assert await login(api, user.email, NEW_PASSWORD) == []
    assert await login(api, user.email, PASSWORD) == ["UNAUTHENTICATED"]
    # Only the hash is stored, and no token is left after its use.
    assert await EmailToken.find({"purpose": "reset_password"}).count() == 0


async def test_refuse_reset_password_expired_or_bad_token(
    api: Api, smtp_server: SmtpServer
) -> None:
    user = await register(api)
    token = await reset_token(api, smtp_server, user.email)
    stored = await EmailToken.find_one({"purpose": "reset_password"})
    assert stored is not None
    # Valid for one hour (the contract's), then refused.
    assert timedelta(minutes=59) < stored.expires_at - utcnow() <= timedelta(hours=1)
    await stored.set({"expires_at": utcnow() - timedelta(seconds=1)})

    expired = await api.execute(op("ResetPassword"), {"token": token, "password": NEW_PASSWORD})
    bad = await api.execute(op("ResetPassword"), {"token": "x" * 43, "password": NEW_PASSWORD})
    empty = await api.execute(op("ResetPassword"), {"token": "", "password": NEW_PASSWORD})

    assert expired.codes == bad.codes == empty.codes == ["UNAUTHENTICATED"]
    assert await login(api, user.email, PASSWORD) == []


async def test_keep_reset_token_after_bad_password(api: Api, smtp_server: SmtpServer) -> None:
    user = await register(api)
    token = await reset_token(api, smtp_server, user.email)

    short = await api.execute(op("ResetPassword"), {"token": token, "password": "short"})
    good = await api.execute(op("ResetPassword"), {"token": token, "password": NEW_PASSWORD})

    assert short.codes == ["BAD_USER_INPUT"]
    assert good.codes == []


async def test_refuse_verification_token_as_reset_token(api: Api, smtp_server: SmtpServer) -> None:
    user = await register(api)
    [mail] = await smtp_server.wait_for(user.email, subject="Confirm")

    wrong = await api.execute(
        op("ResetPassword"), {"token": mail.token("verify"), "password": NEW_PASSWORD}
    )

    assert wrong.codes == ["UNAUTHENTICATED"]


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_reset_password_ends_every_session(
    api: Api, api_server: str, redis: Redis, smtp_server: SmtpServer, protocol: str
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    token = await reset_token(api, smtp_server, user.email)
    async with client(api_server, user, protocol) as ws:
        await subscribed(ws, redis, device.id)

        reset = await api.execute(op("ResetPassword"), {"token": token, "password": NEW_PASSWORD})

        assert reset.codes == []
        assert await closed_code(ws) == REVOKED_CODE
    me = await api.execute(op("Me"), token=user.access_token)
    refreshed = await api.execute(op("Refresh"), {"refreshToken": user.refresh_token})
    assert me.codes == ["UNAUTHENTICATED"]
    assert refreshed.codes == ["UNAUTHENTICATED"]


async def test_reset_password_verifies_the_address(api: Api, smtp_server: SmtpServer) -> None:
    user = await register(api)
    token = await reset_token(api, smtp_server, user.email)

    await api.execute(op("ResetPassword"), {"token": token, "password": NEW_PASSWORD})

    result = await api.execute(op("Login"), {"email": user.email, "password": NEW_PASSWORD})
    assert result.codes == []
    me = await api.execute(
        "query { me { emailVerified } }", token=result.data["login"]["accessToken"]
    )
    assert me.data["me"]["emailVerified"] is True


async def test_request_password_reset_unknown_email_true_and_no_mail(
    api: Api, smtp_server: SmtpServer
) -> None:
    known = await register(api)
    await smtp_server.wait_for(known.email)  # its verification mail
    unknown = unique_email("nobody")

    answers = [
        await api.execute(op("RequestPasswordReset"), {"email": address})
        for address in (unknown, known.email)
    ]

    assert [a.body for a in answers] == [{"data": {"requestPasswordReset": True}}] * 2
    [dropped] = await settled_mails(to=unknown)
    assert dropped.state == MailState.DROPPED
    await smtp_server.wait_for(known.email, subject=RESET_SUBJECT)  # the known one got it
    assert smtp_server.to(unknown) == []


async def test_request_password_reset_same_timing_known_or_unknown(
    api: Api, smtp_server: SmtpServer
) -> None:
    known = await register(api)
    unknown = unique_email("nobody")

    async def mean_seconds(address: str) -> float:
        started = time.perf_counter()
        for _ in range(3):
            result = await api.execute(op("RequestPasswordReset"), {"email": address})
            assert result.data == {"requestPasswordReset": True}
        return (time.perf_counter() - started) / 3

    # The request does the same work either way (the sender looks the address up later).
    known_time, unknown_time = await mean_seconds(known.email), await mean_seconds(unknown)
    assert abs(known_time - unknown_time) < 0.05 + 0.5 * min(known_time, unknown_time)


async def test_limit_password_reset_mails_per_email_silently(
    api: Api, smtp_server: SmtpServer
) -> None:
    user = await register(api)
    limit = 3  # PASSWORD_RESETS_PER_EMAIL's default

    answers = [
        await api.execute(op("RequestPasswordReset"), {"email": user.email})
        for _ in range(limit + 2)
    ]

    assert all(a.data == {"requestPasswordReset": True} for a in answers)
    await smtp_server.wait_for(user.email, limit, subject=RESET_SUBJECT)
    await asyncio.sleep(QUIET_SECONDS)  # well past the sender's polls: nothing more comes
    assert len(smtp_server.to(user.email, RESET_SUBJECT)) == limit
    assert await OutboxMail.find({"kind": "password_reset"}).count() == limit


async def test_limit_password_reset_requests_per_client_address(api: Api) -> None:
    answers = [
        await api.execute(op("RequestPasswordReset"), {"email": unique_email("probe")})
        for _ in range(11)  # PASSWORD_RESETS_PER_ADDRESS's default is 10
    ]

    assert [a.codes for a in answers[:10]] == [[]] * 10
    assert answers[10].codes == ["RATE_LIMITED"]


async def test_reset_password_revokes_every_api_key(
    api: Api, api_server: str, redis: Redis, smtp_server: SmtpServer
) -> None:
    # Whoever stole the password may have minted keys: the reset ends them too, and
    # closes the sockets opened with them.
    user = await register(api)
    device = await create_device(api, user)
    key, _ = await create_key(api, user, ["READ"])
    token = await reset_token(api, smtp_server, user.email)
    async with client(api_server, with_key(user, key), "graphql-transport-ws") as ws:
        await subscribed(ws, redis, device.id)

        reset = await api.execute(op("ResetPassword"), {"token": token, "password": NEW_PASSWORD})

        assert reset.codes == []
        assert await closed_code(ws) == REVOKED_CODE
    me = await api.execute(op("Me"), token=key)
    assert me.codes == ["UNAUTHENTICATED"]
    listed = await api.execute(op("ApiKeys"), token=(await fresh_login(api, user.email)))
    assert listed.data == {"apiKeys": []}


async def fresh_login(api: Api, email: str) -> str:
    result = await api.execute(op("Login"), {"email": email, "password": NEW_PASSWORD})
    return str(result.data["login"]["accessToken"])
