"""A real SMTP server for the tests (aiosmtpd, in its own thread): what it received,
and the faults a test can give it (down, slow)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import time
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.net import free_port

# Long enough for several polls of the senders (EMAIL_OUTBOX_POLL_SECONDS is 0.25 in the
# tests): a mail not received by then was not sent.
QUIET_SECONDS = 1.0


@dataclass(frozen=True)
class Mail:
    sender: str
    recipients: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        body = self.message.get_body(("plain",))
        assert body is not None
        return str(body.get_content())

    def token(self, path: str) -> str:
        """The token of the mail's /console/<path>?token=... link."""
        found = re.search(rf"/console/{path}\?token=([A-Za-z0-9_\-]+)", self.text)
        assert found, f"no /console/{path} link in {self.text!r}"
        return found.group(1)


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self._server = server

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address.startswith("rejected"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self._server.delay:
            # A server too slow to answer: the client gives up first; nothing is kept.
            await asyncio.sleep(self._server.delay)
            return "451 4.3.0 too slow"
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self._server.received.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 OK"


class SmtpServer:
    """aiosmtpd on 127.0.0.1:`port`; `stop()` closes the port (a dead server), `start()`
    opens it again; with `delay` it answers each mail only that late (and refuses it);
    recipients starting with "rejected" are refused for good (550)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[Mail] = []
        self.delay = 0.0
        self._controller: Controller | None = None

    def start(self) -> None:
        if self._controller is not None:
            return
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def to(self, address: str, subject: str | None = None) -> list[Mail]:
        """Every mail received for `address` (whose subject starts with `subject`), in order."""
        return [
            m
            for m in self.received
            if address in m.recipients and (subject is None or m.subject.startswith(subject))
        ]

    async def wait_for(
        self, address: str, count: int = 1, *, subject: str | None = None, timeout: float = 15
    ) -> list[Mail]:
        """The first `count` mails for `address` (and `subject`), once received; fails
        after `timeout`."""
        deadline = time.monotonic() + timeout
        while len(mails := self.to(address, subject)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(mails)} of {count} e-mails to {address} in {timeout} s")
            await asyncio.sleep(0.05)
        return mails[:count]
