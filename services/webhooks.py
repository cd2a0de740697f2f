"""Per-user alert webhooks: the URL, its signing secret, the payload and its signature.

The secret is shown once, when the webhook is set, and never stored: it is
HMAC-derived from a server key and a random nonce kept with the webhook, so the
ingest worker can sign without a readable secret in MongoDB. Setting the webhook
again makes a new nonce, hence a new secret.

Signature (docs/alerts.md): header `X-Iot-Signature: sha256=<hex>` with
hex = HMAC-SHA256(secret, "<X-Iot-Timestamp>." + body).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
from typing import Any
from urllib.parse import urlsplit

from pymongo import ReturnDocument

from core.settings import ApiSettings, CommonSettings
from models.accounts import User, utcnow
from models.alerts import Alert, NotificationWebhook
from services.errors import BadInput

logger = logging.getLogger(__name__)

MAX_URL_LENGTH = 2048
SIGNATURE_HEADER = "X-Iot-Signature"
TIMESTAMP_HEADER = "X-Iot-Timestamp"
DELIVERY_HEADER = "X-Iot-Delivery"
_KEY_LABEL = b"iotplatform webhook signing key v1"


def signing_key(settings: CommonSettings) -> bytes:
    """WEBHOOK_SIGNING_KEY, or a key derived from DEVICE_CREDENTIAL_KEY (domain-separated,
    so neither reveals the other)."""
    if settings.webhook_signing_key is not None:
        return settings.webhook_signing_key.get_secret_value().encode()
    device_key = settings.device_credential_key.get_secret_value().encode()
    return hmac.new(device_key, _KEY_LABEL, hashlib.sha256).digest()


def webhook_secret(settings: CommonSettings, user_id: str, nonce: str) -> str:
    """The signing secret of one user's webhook, as the user was shown it."""
    digest = hmac.new(signing_key(settings), f"{user_id}:{nonce}".encode(), hashlib.sha256)
    return "whsec_" + base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Iot-Signature value of one delivery attempt."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def refused_address(address: str) -> bool:
    """Whether a webhook may not go to this IP (SSRF): anything but a public unicast one."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def check_url(url: str, *, allow_private: bool) -> str:
    """A webhook URL: http(s), a host, no credentials; a literal private IP refused
    unless allowed (host names are checked when each delivery resolves them)."""
    text = url.strip()
    if not text:
        raise BadInput("url", "must not be empty")
    if len(text) > MAX_URL_LENGTH:
        raise BadInput("url", f"must be at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as err:
        raise BadInput("url", f"not a valid URL ({err})") from err
    if parts.scheme not in ("http", "https"):
        raise BadInput("url", "must be an http or https URL")
    if not parts.hostname:
        raise BadInput("url", "must name a host")
    if parts.username is not None or parts.password is not None:
        raise BadInput("url", "must not carry credentials; verify the signature instead")
    if port == 0:
        raise BadInput("url", "port 0 is not allowed")
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        literal = None
    if literal is not None and not allow_private and refused_address(str(literal)):
        raise BadInput("url", "private, loopback and link-local addresses are not allowed")
    return text


async def set_webhook(
    viewer: User, url: str, *, settings: ApiSettings
) -> tuple[NotificationWebhook, str]:
    """Set (or replace) the viewer's webhook; returns it and its new secret, shown once."""
    checked = check_url(url, allow_private=settings.webhook_allow_private_networks)
    nonce = secrets.token_urlsafe(16)
    raw = await NotificationWebhook.get_pymongo_collection().find_one_and_update(
        {"user_id": viewer.id},
        {
            "$set": {
                "url": checked,
                "secret_nonce": nonce,
                "created_at": utcnow(),
                # The caller's personal organization (its id is the caller's).
                "organization_id": viewer.id,
            }
        },
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )
    webhook = NotificationWebhook.model_validate(raw)
    # The host only: a URL may carry a token in its path or query.
    logger.info("webhook of user %s set (host %s)", viewer.id, urlsplit(checked).hostname)
    return webhook, webhook_secret(settings, str(viewer.id), nonce)


async def get_webhook(viewer: User) -> NotificationWebhook | None:
    """The viewer's webhook, if set (never its secret)."""
    return await NotificationWebhook.find_one({"user_id": viewer.id})


async def remove_webhook(viewer: User) -> bool:
    """Remove the viewer's webhook; False when there was none."""
    result = await NotificationWebhook.get_pymongo_collection().delete_one({"user_id": viewer.id})
    return result.deleted_count > 0


def _instant(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def alert_payload(alert: Alert, *, delivery_id: str) -> bytes:
    """The JSON body POSTed for a raised alert."""
    return json.dumps(
        {
            "event": "alert.raised",
            "deliveryId": delivery_id,
            "alert": {
                "id": str(alert.id),
                "deviceId": str(alert.device_id),
                "ruleId": str(alert.rule_id) if alert.rule_id else None,
                "kind": alert.kind.value,
                "metric": alert.metric,
                "value": alert.value,
                "message": alert.message,
                "severity": alert.severity.value,
                "state": alert.state.value,
                "raisedAt": _instant(alert.raised_at),
            },
        },
        separators=(",", ":"),
    ).encode()
