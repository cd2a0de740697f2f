"""The platform's e-mails as plain text: subject, body and the one link each carries.

Links point at the web console under PUBLIC_BASE_URL (README "E-mail"):
/console/verify?token=..., /console/reset?token=..., /console/alerts/<id>.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlencode

from models.alerts import Alert


@dataclass(frozen=True, slots=True)
class Message:
    subject: str
    text: str
    link: str


def console_link(base_url: str, path: str, *, token: str | None = None) -> str:
    """An absolute console link: `base_url` + /console/<path>, with `token` as a query."""
    link = f"{base_url.rstrip('/')}/console/{path}"
    return f"{link}?{urlencode({'token': token})}" if token is not None else link


def verification(base_url: str, token: str, *, ttl_hours: int) -> Message:
    link = console_link(base_url, "verify", token=token)
    return Message(
        subject="Confirm your e-mail address",
        text=(
            "Confirm this address for your IoT platform account by opening:\n\n"
            f"{link}\n\n"
            f"The link works once, for {ttl_hours} hours. If you did not register, "
            "ignore this e-mail.\n"
        ),
        link=link,
    )


def password_reset(base_url: str, token: str) -> Message:
    link = console_link(base_url, "reset", token=token)
    return Message(
        subject="Reset your password",
        text=(
            "Someone (we hope you) asked to reset the password of your IoT platform "
            "account. Choose a new one here:\n\n"
            f"{link}\n\n"
            "The link works once, for one hour; using it signs out every session of the "
            "account. If you did not ask, ignore this e-mail: your password stays.\n"
        ),
        link=link,
    )


def alert(base_url: str, raised: Alert, *, device_name: str, reminder: int = 0) -> Message:
    """The mail of a raised alert; `reminder` n > 0: the n-th reminder while it is ACTIVE."""
    link = console_link(base_url, f"alerts/{quote(str(raised.id))}")
    what = f"{raised.severity.value} alert on {device_name}: {raised.message}"
    prefix = "[reminder] " if reminder else ""
    lines = [
        f"{what}",
        "",
        f"Device: {device_name} ({raised.device_id})",
        f"Kind: {raised.kind.value}",
    ]
    if raised.metric is not None:
        lines.append(f"Metric: {raised.metric} = {raised.value}")
    lines += [f"Raised at: {raised.raised_at.isoformat()}", ""]
    if reminder:
        lines += [f"It is still ACTIVE (reminder {reminder}).", ""]
    lines += [f"Acknowledge it: {link}", ""]
    # Headers must stay on one line whatever the message holds.
    subject = " ".join(f"{prefix}{what}".split())[:200]
    return Message(subject=subject, text="\n".join(lines), link=link)
