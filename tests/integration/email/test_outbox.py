"""The outbox against a real SMTP server that is down, slow or refusing: mail waits and
is retried with backoff, is sent once across API processes, and nothing else waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from api.mailer import Mailer
from core.settings import Settings
from models.accounts import utcnow
from models.email import MailKind, MailState, OutboxMail
from services import outbox
from services.mail_messages import Message
from services.mail_transport import LogTransport
from tests.client import Api
from tests.contract import op
from tests.factories import register, unique_email
from tests.integration.alerts.conftest import eventually
from tests.integration.email.helpers import VERIFY_SUBJECT, settled_mails
from tests.servers import serve_api
from tests.smtp import QUIET_SECONDS, SmtpServer


@pytest.fixture
def smtp_down(smtp_server: SmtpServer) -> Iterator[SmtpServer]:
    smtp_server.stop()
    try:
        yield smtp_server
    finally:
        smtp_server.start()


@pytest.fixture
def smtp_slow(smtp_server: SmtpServer) -> Iterator[SmtpServer]:
    smtp_server.delay = 5.0  # SMTP_TIMEOUT_SECONDS is 2 in the tests
    try:
        yield smtp_server
    finally:
        smtp_server.delay = 0.0


async def timed(api: Api, query: str, token: str) -> float:
    started = time.perf_counter()
    result = await api.execute(query, token=token)
    assert result.codes == []
    return time.perf_counter() - started


async def failed_attempts(to: str, count: int) -> OutboxMail:
    async def check() -> OutboxMail | None:
        mail = await OutboxMail.find_one({"to": to})
        return mail if mail is not None and mail.attempts >= count and mail.last_error else None

    found: OutboxMail = await eventually(check, what=f"{count} failed attempts for {to}")
    return found


async def test_retry_mail_until_smtp_server_is_back(api: Api, smtp_down: SmtpServer) -> None:
    started = time.perf_counter()
    user = await register(api)
    assert time.perf_counter() - started < 1.5  # registration does not wait for SMTP

    waiting = await failed_attempts(user.email, 2)
    assert waiting.state == MailState.PENDING
    assert "connect" in (waiting.last_error or "").lower()
    assert await timed(api, op("Me"), user.access_token) < 1.0
    smtp_down.start()

    [mail] = await smtp_down.wait_for(user.email)
    assert mail.subject == VERIFY_SUBJECT
    [sent] = await settled_mails(to=user.email)
    assert sent.state == MailState.SENT and sent.sent_at is not None
    assert sent.text is None  # the token's link is not kept once sent
    await asyncio.sleep(QUIET_SECONDS)
    assert len(smtp_down.to(user.email)) == 1


async def test_slow_smtp_server_times_out_and_blocks_nothing(
    api: Api, smtp_slow: SmtpServer
) -> None:
    user = await register(api)
    # While an attempt hangs on the server, the API answers as usual.
    await eventually(
        lambda: OutboxMail.find_one({"to": user.email, "attempts": {"$gte": 1}}),
        what="an attempt under way",
    )
    assert max([await timed(api, op("Me"), user.access_token) for _ in range(5)]) < 1.0
    waiting = await failed_attempts(user.email, 1)
    assert waiting.last_error == "no answer within 2 s"
    smtp_slow.delay = 0.0

    [mail] = await smtp_slow.wait_for(user.email)

    assert mail.subject == VERIFY_SUBJECT
    [sent] = await settled_mails(to=user.email)
    assert sent.attempts >= 2


async def test_give_up_mail_after_max_attempts(api: Api, smtp_down: SmtpServer) -> None:
    started = time.monotonic()
    user = await register(api)

    [dead] = await settled_mails(to=user.email)

    assert dead.state == MailState.DEAD
    assert dead.attempts == 8  # EMAIL_MAX_ATTEMPTS
    assert dead.text is None and dead.expire_at is not None and dead.sent_at is None
    # The waits between attempts grew (0.2, 0.4, 0.8, then the 1 s maximum): 5.4 s.
    assert time.monotonic() - started >= 5.4
    smtp_down.start()
    await asyncio.sleep(QUIET_SECONDS)
    assert smtp_down.to(user.email) == []


async def test_give_up_mail_refused_by_server_at_once(api: Api, smtp_server: SmtpServer) -> None:
    await register(api, unique_email("rejected"))

    [dead] = await settled_mails(kind=MailKind.VERIFY_EMAIL.value)

    assert dead.state == MailState.DEAD
    assert dead.attempts == 1
    assert (dead.last_error or "").startswith("SMTP 550")


async def test_send_each_mail_once_from_two_api_processes(
    api: Api, settings: Settings, smtp_server: SmtpServer
) -> None:
    async with serve_api(settings) as second_url, Api(second_url) as second:
        users = [await register(client) for client in (api, second) * 5]
        for user in users:
            await smtp_server.wait_for(user.email)
        await asyncio.sleep(QUIET_SECONDS)  # both senders polled several times since

    assert [len(smtp_server.to(u.email)) for u in users] == [1] * len(users)


async def test_claim_due_mail_once_among_concurrent_claims(settings: Settings) -> None:
    later = utcnow() + timedelta(days=1)  # beyond the running senders' reach
    await OutboxMail.insert_many(
        [
            OutboxMail(
                kind=MailKind.ALERT,
                to=f"claim{i}@example.com",
                subject="s",
                text="t",
                key=f"c{i}",
                next_attempt_at=later,
            )
            for i in range(20)
        ]
    )

    claimed: list[OutboxMail] = []
    for _ in range(20):  # rounds of concurrent claims, until one finds nothing
        claims = await asyncio.gather(
            *(outbox.claim_due(settings, now=later + timedelta(seconds=1)) for _ in range(8))
        )
        if not any(claims):
            break
        claimed += [c for c in claims if c is not None]

    assert sorted(str(c.key) for c in claimed) == sorted(f"c{i}" for i in range(20))
    assert all(c.attempts == 1 for c in claimed)


async def test_enqueue_same_key_once(settings: Settings) -> None:
    message = Message(subject="s", text="t", link="l")

    first = await outbox.enqueue(MailKind.ALERT, "k@example.com", message, key="alert:x")
    again = await outbox.enqueue(MailKind.ALERT, "k@example.com", message, key="alert:x")

    assert (first, again) == (True, False)
    assert await OutboxMail.find({"key": "alert:x"}).count() == 1


async def test_retry_mail_of_a_sender_that_died_after_its_lease(settings: Settings) -> None:
    later = utcnow() + timedelta(days=1)  # beyond the running senders' reach
    await OutboxMail(
        kind=MailKind.ALERT, to="lease@example.com", subject="s", text="t", next_attempt_at=later
    ).insert()
    first = await outbox.claim_due(settings, now=later)
    assert first is not None  # ... and its sender dies without a word

    held = await outbox.claim_due(settings, now=later + outbox.lease(settings) / 2)
    again = await outbox.claim_due(settings, now=later + outbox.lease(settings))

    assert held is None
    assert again is not None and again.id == first.id and again.attempts == 2


async def test_give_up_mail_claimed_beyond_max_attempts(settings: Settings) -> None:
    later = utcnow() + timedelta(days=1)
    await OutboxMail(
        kind=MailKind.ALERT,
        to="crashes@example.com",
        subject="s",
        text="t",
        attempts=settings.email_max_attempts,  # each ended in a crash, without a verdict
        next_attempt_at=later,
    ).insert()
    mail = await outbox.claim_due(settings, now=later)
    assert mail is not None

    await Mailer(settings, LogTransport()).attempt(mail)

    settled = await OutboxMail.get(mail.id)
    assert settled is not None and settled.state == MailState.DEAD
    assert settled.last_error == "out of attempts"
