"""Login brute force is throttled: in parallel, behind forged headers, and over WebSocket."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

from core.settings import Settings
from tests.client import Api
from tests.contract import op
from tests.factories import PASSWORD, register, unique_email
from tests.integration.api.test_websocket import TRANSPORT_WS
from tests.integration.graph.test_subscriptions import client as ws_client
from tests.processes import api_process

GUESSES = 40


def codes_of(results: list[dict[str, object]]) -> Counter[str]:
    return Counter(
        error["extensions"]["code"]
        for result in results
        for error in result.get("errors") or []  # type: ignore[attr-defined]
    )


async def guess(api: Api, email: str, password: str, **headers: str) -> dict[str, object]:
    response = await api.http.post(
        "/graphql",
        json={"query": op("Login"), "variables": {"email": email, "password": password}},
        headers=headers,
    )
    body: dict[str, object] = response.json()
    return body


async def test_throttle_login_parallel_guesses_one_email(api: Api, settings: Settings) -> None:
    victim = await register(api)
    results = await asyncio.gather(
        *(guess(api, victim.email, f"guess number {n}") for n in range(GUESSES))
    )
    codes = codes_of(results)
    # Only the allowance is ever checked against the password; the rest wait out the window.
    assert codes["UNAUTHENTICATED"] <= settings.login_failures_per_email, codes
    assert codes["UNAUTHENTICATED"] + codes["RATE_LIMITED"] == GUESSES, codes
    right = await guess(api, victim.email, PASSWORD)
    assert codes_of([right]) == {"RATE_LIMITED": 1}


async def test_throttle_register_parallel_attempts_one_address(
    api: Api, settings: Settings
) -> None:
    results = await asyncio.gather(
        *(
            api.execute(op("Register"), {"email": unique_email("burst"), "password": PASSWORD})
            for _ in range(GUESSES)
        )
    )
    created = [result for result in results if not result.errors]
    assert len(created) == settings.registrations_per_address
    assert codes_of([result.body for result in results]) == {
        "RATE_LIMITED": GUESSES - settings.registrations_per_address
    }


async def test_throttle_login_forged_forwarded_for_same_address(settings: Settings) -> None:
    # `python -m api` as deployed: FORWARDED_ALLOW_IPS is empty, so a header the attacker
    # writes changes nothing.
    assert not settings.forwarded_allow_ips
    limit = settings.login_failures_per_address
    async with api_process(settings) as url, Api(url) as api:
        honest = await register(api, unique_email("honest"))
        spread = [
            await guess(
                api,
                unique_email("stranger"),
                "wrong password",
                **{"X-Forwarded-For": f"10.0.0.{n}"},
            )
            for n in range(limit)
        ]
        blocked = await guess(api, honest.email, PASSWORD, **{"X-Forwarded-For": "10.9.9.9"})
    assert codes_of(spread) == {"UNAUTHENTICATED": limit}
    assert codes_of([blocked]) == {"RATE_LIMITED": 1}


async def test_throttle_login_over_websocket_like_http(
    api: Api, api_server: str, settings: Settings
) -> None:
    attacker = await register(api)
    victim = await register(api)
    answers: list[dict[str, object]] = []
    async with ws_client(api_server, attacker, TRANSPORT_WS) as ws:
        for n in range(settings.login_failures_per_email + 2):
            variables = {"email": victim.email, "password": f"guess {n}"}
            await ws.ws.send(
                json.dumps(
                    {
                        "id": str(n),
                        "type": "subscribe",
                        "payload": {"query": op("Login"), "variables": variables},
                    }
                )
            )
            kind, op_id, payload = await ws.receive()
            assert (kind, op_id) == ("next", str(n)), payload
            answers.append(payload)
            assert (await ws.receive())[:2] == ("complete", str(n))
    codes = [codes_of([answer]) for answer in answers]
    allowance = settings.login_failures_per_email
    assert codes == [{"UNAUTHENTICATED": 1}] * allowance + [{"RATE_LIMITED": 1}] * 2
    # The same counter as over HTTP: the victim's right password is refused too.
    assert codes_of([await guess(api, victim.email, PASSWORD)]) == {"RATE_LIMITED": 1}
