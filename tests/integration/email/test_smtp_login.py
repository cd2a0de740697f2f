"""The SMTP transport logs in with SMTP_USERNAME/SMTP_PASSWORD (a real aiosmtpd server
that requires AUTH), and a refused login is retried, not given up."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import SecretStr

from core.settings import Settings
from models.email import MailKind
from services.mail_transport import MailFailed, SmtpTransport
from tests.net import free_port

# aiosmtpd warns (in its server thread) about AUTH without TLS: wanted here, no certificate.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return "250 OK"


def authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"mailer",
        b"s3cret-smtp",
    )
    return AuthResult(success=ok)


@pytest.fixture
def auth_server() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=False,  # no certificate here; production uses starttls or tls
    )
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def transport(settings: Settings, port: int, password: str) -> SmtpTransport:
    return SmtpTransport(
        settings.model_copy(
            update={
                "smtp_port": port,
                "smtp_username": "mailer",
                "smtp_password": SecretStr(password),
                "email_sender": "Ops <ops@example.com>",
            }
        )
    )


async def test_deliver_with_smtp_login(settings: Settings, auth_server: tuple[Inbox, int]) -> None:
    inbox, port = auth_server

    outcome = await transport(settings, port, "s3cret-smtp").deliver(
        kind=MailKind.ALERT, to="a@example.com", subject="Hello", text="body\n", link=None
    )

    assert outcome == "sent"
    [message] = inbox.messages
    assert (message["From"], message["To"], message["Subject"]) == (
        "Ops <ops@example.com>",
        "a@example.com",
        "Hello",
    )


async def test_refused_smtp_login_is_retried_not_given_up(
    settings: Settings, auth_server: tuple[Inbox, int]
) -> None:
    inbox, port = auth_server

    with pytest.raises(MailFailed) as failed:
        await transport(settings, port, "wrong").deliver(
            kind=MailKind.ALERT, to="a@example.com", subject="Hello", text="body\n", link=None
        )

    assert failed.value.permanent is False
    assert "wrong" not in failed.value.reason  # the password is never in the error
    assert inbox.messages == []
