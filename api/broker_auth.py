"""HTTP auth endpoints for brokers other than Mosquitto (docs/brokers.md).

Served only when BROKER_AUTH_SECRET is set, and only to a caller presenting it as the
password of HTTP Basic auth (RabbitMQ: user info in the configured URLs; EMQX: an
Authorization header). Every decision comes from services.broker_auth (who) and
services.broker_rules (what): the rules dynsec holds for Mosquitto.

RabbitMQ (rabbitmq_auth_backend_http, `http_method = post`, form bodies; answers are
`allow` / `deny` as text):
  /broker/auth/rabbitmq/user      username, password[, client_id]
  /broker/auth/rabbitmq/vhost     username, vhost, ip
  /broker/auth/rabbitmq/resource  username, vhost, resource, name, permission
  /broker/auth/rabbitmq/topic     ... + routing_key, variable_map.client_id
EMQX (HTTP authn / authz, JSON bodies; answers `{"result": "allow" | "deny"}`):
  /broker/auth/emqx/authn         {"username", "password", "clientid"}
  /broker/auth/emqx/authz         {"username", "clientid", "topic", "action"}
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from collections.abc import Mapping
from typing import Final
from urllib.parse import parse_qsl

from pydantic import SecretStr
from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from api.state import AppState
from core.settings import ApiSettings
from services import broker_auth, broker_rules
from services.broker_rules import Action, BrokerParty

logger = logging.getLogger(__name__)

PREFIX: Final = "/broker/auth"
# The only exchange MQTT uses in RabbitMQ (its default `mqtt.exchange`).
MQTT_EXCHANGE: Final = "amq.topic"
# The queues RabbitMQ's MQTT plugin declares for a client's subscriptions (3.10).
SUBSCRIPTION_QUEUES: Final = ("mqtt-subscription-{}qos0", "mqtt-subscription-{}qos1")
ALLOW: Final = "allow"
DENY: Final = "deny"


def caller_allowed(request: Request, secret: SecretStr) -> bool:
    """HTTP Basic auth whose password is BROKER_AUTH_SECRET (the user name is free)."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    _, _, password = decoded.partition(":")
    return hmac.compare_digest(password.encode(), secret.get_secret_value().encode())


# ---------------------------------------------------------------- RabbitMQ mapping


def rabbitmq_topic(routing_key: str) -> str:
    """The MQTT topic (or filter) RabbitMQ's MQTT plugin turned into `routing_key`:
    it replaced `/` by `.` and `+` by `*` (rabbit_mqtt_util:to_amqp), so `.` is a level.
    A literal `.` of the MQTT topic also became a level: decisions are on what routes."""
    return routing_key.replace("*", "+").replace(".", "/")


def rabbitmq_resource(party: BrokerParty, resource: str, name: str, permission: str) -> bool:
    """Exchange amq.topic: write (publish) and read (bind subscriptions), never configure.
    Queues: only the party's own MQTT subscription queues (named by its bound client id,
    so another client id gets nothing), and for the ingest workers their shared quorum
    queues (ingest/amqp.py; what they bind is still checked per routing key by the topic
    check). Anything else is refused."""
    if resource == "exchange":
        return name == MQTT_EXCHANGE and permission in ("write", "read")
    if resource == "queue":
        own = {pattern.format(party.client_id) for pattern in SUBSCRIPTION_QUEUES}
        if party.party == "ingest" and name.startswith(broker_rules.INGEST_QUEUE_PREFIX):
            return permission in ("configure", "write", "read")
        return name in own and permission in ("configure", "write", "read")
    return False


def rabbitmq_topic_access(
    party: BrokerParty,
    settings: ApiSettings,
    *,
    exchange: str,
    permission: str,
    routing_key: str,
    client_id: str | None,
) -> bool:
    """write: a publish to the routing key's topic; read: a subscription binding it."""
    if exchange != MQTT_EXCHANGE or (client_id is not None and client_id != party.client_id):
        return False
    action: Action
    if permission == "write":
        action = "publish"
    elif permission == "read":
        action = "subscribe"
    else:
        return False
    topic = rabbitmq_topic(routing_key)
    return broker_rules.decide(broker_rules.acls_for(party, settings), action, topic)


# ---------------------------------------------------------------- EMQX mapping


def emqx_action(action: str) -> Action | None:
    """EMQX's `${action}`: publish or subscribe (anything else is refused)."""
    return action if action in ("publish", "subscribe") else None  # type: ignore[return-value]


def emqx_result(allowed: bool) -> dict[str, object]:
    """EMQX's answer body (HTTP 200, JSON); never a superuser."""
    return {"result": ALLOW if allowed else DENY, "is_superuser": False}


def emqx_authz(
    party: BrokerParty | None, settings: ApiSettings, body: Mapping[str, object]
) -> bool:
    """An EMQX authz request over the same decision as dynsec's."""
    action = emqx_action(str(body.get("action", "")))
    topic = body.get("topic")
    if party is None or action is None or not isinstance(topic, str):
        return False
    if body.get("clientid") != party.client_id:
        return False
    return broker_rules.decide(broker_rules.acls_for(party, settings), action, topic)


# ---------------------------------------------------------------- endpoints


def _state(request: Request) -> tuple[ApiSettings, Redis]:
    state: AppState = request.app.state.platform
    return state.settings, state.redis


def _text(allowed: bool) -> Response:
    return PlainTextResponse(ALLOW if allowed else DENY)


def _optional(values: Mapping[str, object], key: str) -> str | None:
    value = values.get(key)
    return value if isinstance(value, str) else None


async def _form(request: Request) -> dict[str, str]:
    """RabbitMQ's url-encoded body (parse_qsl: cheaper than a multipart parser)."""
    try:
        return dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
    except UnicodeDecodeError:
        return {}


def _bound(form: Mapping[str, str], party: BrokerParty | None) -> BrokerParty | None:
    """The party, unless the request names another client id than its bound one
    (RabbitMQ 3.10 adds `client_id` to the vhost and resource checks of MQTT clients)."""
    client_id = form.get("client_id")
    if party is None or (client_id is not None and client_id != party.client_id):
        return None
    return party


async def _refused(request: Request) -> Response | None:
    settings, _ = _state(request)
    if settings.broker_auth_secret is None or not caller_allowed(
        request, settings.broker_auth_secret
    ):
        return PlainTextResponse("unauthorized", status_code=401)
    return None


async def rabbitmq_user(request: Request) -> Response:
    if (refused := await _refused(request)) is not None:
        return refused
    settings, redis = _state(request)
    form = await _form(request)
    party = await broker_auth.authenticate(
        settings,
        redis,
        username=form.get("username", ""),
        password=form.get("password", ""),
        client_id=form.get("client_id"),
    )
    if party is None:
        logger.info("broker auth: login refused for %r", form.get("username", "")[:64])
    return _text(party is not None)


async def rabbitmq_vhost(request: Request) -> Response:
    if (refused := await _refused(request)) is not None:
        return refused
    settings, redis = _state(request)
    form = await _form(request)
    party = _bound(form, await broker_auth.party_of(settings, redis, form.get("username", "")))
    return _text(party is not None and form.get("vhost") == settings.broker_auth_vhost)


async def rabbitmq_resource_endpoint(request: Request) -> Response:
    if (refused := await _refused(request)) is not None:
        return refused
    settings, redis = _state(request)
    form = await _form(request)
    party = _bound(form, await broker_auth.party_of(settings, redis, form.get("username", "")))
    return _text(
        party is not None
        and form.get("vhost") == settings.broker_auth_vhost
        and rabbitmq_resource(
            party, form.get("resource", ""), form.get("name", ""), form.get("permission", "")
        )
    )


async def rabbitmq_topic_endpoint(request: Request) -> Response:
    if (refused := await _refused(request)) is not None:
        return refused
    settings, redis = _state(request)
    form = await _form(request)
    party = await broker_auth.party_of(settings, redis, form.get("username", ""))
    return _text(
        party is not None
        and form.get("vhost") == settings.broker_auth_vhost
        and form.get("resource") == "topic"
        and rabbitmq_topic_access(
            party,
            settings,
            exchange=form.get("name", ""),
            permission=form.get("permission", ""),
            routing_key=form.get("routing_key", ""),
            client_id=form.get("variable_map.client_id"),
        )
    )


async def _json(request: Request) -> dict[str, object]:
    try:
        body = json.loads(await request.body())
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


async def emqx_authn(request: Request) -> Response:
    if (refused := await _refused(request)) is not None:
        return refused
    settings, redis = _state(request)
    body = await _json(request)
    party = await broker_auth.authenticate(
        settings,
        redis,
        username=_optional(body, "username") or "",
        password=_optional(body, "password") or "",
        # EMQX always knows the client id: bind it at login.
        client_id=_optional(body, "clientid") or "",
    )
    return JSONResponse(emqx_result(party is not None))


async def emqx_authz_endpoint(request: Request) -> Response:
    if (refused := await _refused(request)) is not None:
        return refused
    settings, redis = _state(request)
    body = await _json(request)
    party = await broker_auth.party_of(settings, redis, _optional(body, "username") or "")
    return JSONResponse(emqx_result(emqx_authz(party, settings, body)))


def broker_auth_routes(settings: ApiSettings) -> list[Route]:
    """The endpoints, or none without BROKER_AUTH_SECRET (then they are 404s)."""
    if settings.broker_auth_secret is None:
        return []
    return [
        Route(f"{PREFIX}/rabbitmq/user", rabbitmq_user, methods=["POST"]),
        Route(f"{PREFIX}/rabbitmq/vhost", rabbitmq_vhost, methods=["POST"]),
        Route(f"{PREFIX}/rabbitmq/resource", rabbitmq_resource_endpoint, methods=["POST"]),
        Route(f"{PREFIX}/rabbitmq/topic", rabbitmq_topic_endpoint, methods=["POST"]),
        Route(f"{PREFIX}/emqx/authn", emqx_authn, methods=["POST"]),
        Route(f"{PREFIX}/emqx/authz", emqx_authz_endpoint, methods=["POST"]),
    ]
