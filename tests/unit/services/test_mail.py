"""E-mail without a server: messages, links, retry waits, the transport a process picks,
and what development logs."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from beanie import PydanticObjectId

from core.settings import Settings
from models.alerts import Alert, AlertKind, Severity
from models.email import MailKind
from services import mail_messages
from services.mail_transport import DropTransport, LogTransport, SmtpTransport, transport_for
from services.outbox import retry_delay


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_console_link_base_url_with_or_without_slash() -> None:
    assert mail_messages.console_link("https://iot.example.com/", "reset", token="a-b_c") == (
        "https://iot.example.com/console/reset?token=a-b_c"
    )
    assert mail_messages.console_link("https://iot.example.com", "alerts/1") == (
        "https://iot.example.com/console/alerts/1"
    )


def test_alert_subject_one_line_whatever_the_message() -> None:
    # model_construct: a document without a database behind it (no Beanie binding).
    alert = Alert.model_construct(
        id=PydanticObjectId(),
        owner_id=PydanticObjectId(),
        device_id=PydanticObjectId(),
        kind=AlertKind.ANOMALY,
        message="line one\r\nBcc: victim@example.com",
        severity=Severity.CRITICAL,
        raised_at=datetime(2026, 1, 1, tzinfo=UTC),
    )

    message = mail_messages.alert("http://x", alert, device_name="pump\nX", reminder=2)

    assert "\n" not in message.subject and "\r" not in message.subject
    assert message.subject.startswith("[reminder] CRITICAL alert on pump X: line one")
    assert "reminder 2" in message.text
    assert message.link == f"http://x/console/alerts/{alert.id}"


def test_retry_delay_grows_to_the_maximum() -> None:
    config = settings(email_retry_first_seconds=10, email_retry_max_seconds=60)

    waits = [retry_delay(config, attempts) for attempts in range(1, 7)]

    assert waits == [10, 20, 40, 60, 60, 60]


def test_transport_smtp_when_host_set() -> None:
    assert isinstance(transport_for(settings(smtp_host="mail.example.com")), SmtpTransport)


def test_transport_log_in_development_without_host() -> None:
    assert isinstance(transport_for(settings(environment="development")), LogTransport)


def test_transport_none_in_production_without_host_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    production = settings(
        environment="production", jwt_secret="j" * 48, device_credential_key="k" * 48
    )
    with caplog.at_level(logging.WARNING):
        transport = transport_for(production)

    assert isinstance(transport, DropTransport)
    assert "SMTP_HOST is not set" in caplog.text


async def test_log_transport_logs_link_only(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        outcome = await LogTransport().deliver(
            kind=MailKind.PASSWORD_RESET,
            to="someone@example.com",
            subject="Reset your password",
            text="body with the link http://x/console/reset?token=t0k",
            link="http://x/console/reset?token=t0k",
        )

    assert outcome == "sent"
    [record] = caplog.records
    assert record.levelno == logging.INFO
    assert "http://x/console/reset?token=t0k" in record.getMessage()
    assert "someone@example.com" not in caplog.text and "body with" not in caplog.text


async def test_drop_transport_sends_nothing() -> None:
    outcome = await DropTransport().deliver(
        kind=MailKind.ALERT, to="a@example.com", subject="s", text="t", link=None
    )
    assert outcome == "dropped"


def test_keep_smtp_password_out_of_repr() -> None:
    config = settings(smtp_password="smtp-s3cr3t-value")
    assert "smtp-s3cr3t" not in repr(config)
    assert "smtp-s3cr3t" not in str(config.model_dump())
