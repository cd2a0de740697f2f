"""Live events reach the members of the device's organization; a removed member loses
access at once: its HTTP requests and its open subscriptions, on both protocols."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from core.events import StatusEvent, alert_owner_channel, device_channel, owner_channel
from models.alerts import AlertKind, Severity
from services.alerts import NewAlert, alert_event, open_alert, publish_alert_event
from tests.client import Api
from tests.contract import op
from tests.integration.api.test_websocket import LEGACY_WS, TRANSPORT_WS
from tests.integration.graph.test_subscriptions import (
    client,
    expected_reading,
    publish,
    reading_event,
)
from tests.integration.live import wait_numsub
from tests.integration.organizations import create_org_device, make_team
from tests.integration.security.test_revocation import REVOKED_CODE, closed_code

PROTOCOLS = [TRANSPORT_WS, LEGACY_WS]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_removed_member_subscription_closed_and_requests_not_found(
    api: Api, api_server: str, redis: Redis, protocol: str
) -> None:
    team = await make_team(api)
    device_id = team.device.id
    async with client(api_server, team.viewer, protocol) as ws:
        await ws.subscribe("1", op("ReadingAdded"), {"deviceId": device_id})
        await wait_numsub(redis, device_channel("readings", device_id), 1)
        await publish(redis, reading_event(device_id, team.organization_id, 1.0))
        assert await ws.next_data() == expected_reading(device_id, 1.0)

        removed = await api.execute(
            op("RemoveMember"),
            {"organizationId": team.organization_id, "userId": team.viewer.user_id},
            token=team.owner.access_token,
        )
        assert removed.errors == []
        # Published once the removal is done: the socket closes, nothing more arrives.
        await publish(redis, reading_event(device_id, team.organization_id, 2.0))
        assert await closed_code(ws) == REVOKED_CODE
    # Its next request sees nothing of the organization, with the same access token.
    device = await api.execute(op("Device"), {"id": device_id}, token=team.viewer.access_token)
    assert device.code == "NOT_FOUND"
    # A new subscription is refused too.
    async with client(api_server, team.viewer, protocol) as ws:
        await ws.subscribe("1", op("ReadingAdded"), {"deviceId": device_id})
        kind, op_id, payload = await ws.receive()
    assert (kind, op_id) == ("error", "1")
    errors = payload if isinstance(payload, list) else [payload]
    assert [error["extensions"]["code"] for error in errors] == ["NOT_FOUND"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_role_change_closes_member_sockets(
    api: Api, api_server: str, redis: Redis, protocol: str
) -> None:
    team = await make_team(api)
    async with client(api_server, team.operator, protocol) as ws:
        await ws.subscribe("1", op("ReadingAdded"), {"deviceId": team.device.id})
        await wait_numsub(redis, device_channel("readings", team.device.id), 1)
        demoted = await api.execute(
            op("AddMember"),
            {
                "organizationId": team.organization_id,
                "email": team.operator.email,
                "role": "VIEWER",
            },
            token=team.owner.access_token,
        )
        assert demoted.errors == []
        assert await closed_code(ws) == REVOKED_CODE
    # Demoted: it reads but no longer writes.
    update = await api.execute(
        op("UpdateDevice"), {"id": team.device.id, "name": "x"}, token=team.operator.access_token
    )
    assert update.code == "FORBIDDEN"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_every_device_feed_of_member_spans_its_organizations(
    api: Api, api_server: str, redis: Redis, protocol: str
) -> None:
    team = await make_team(api)
    personal = await create_org_device(api, team.viewer, None, name="home")
    outsiders = await create_org_device(api, team.outsider, None, name="theirs")
    async with client(api_server, team.viewer, protocol) as ws:
        await ws.subscribe("1", op("ReadingAdded"))
        # Its personal organization's channel and the team's.
        for organization_id in (team.viewer.user_id, team.organization_id):
            await wait_numsub(redis, owner_channel("readings", organization_id), 1)
        await publish(redis, reading_event(outsiders.id, team.outsider.user_id, 9.0))
        await publish(redis, reading_event(team.device.id, team.organization_id, 1.0))
        await publish(redis, reading_event(personal.id, team.viewer.user_id, 2.0))
        # The outsider's came first: had it been delivered it would be first here.
        assert await ws.next_data() == expected_reading(team.device.id, 1.0)
        assert await ws.next_data() == expected_reading(personal.id, 2.0)


async def test_status_feed_of_member_includes_organization_devices(
    api: Api, api_server: str, redis: Redis
) -> None:
    team = await make_team(api)
    async with client(api_server, team.viewer) as ws:
        await ws.subscribe("1", op("DeviceStatusChanged"))
        await wait_numsub(redis, owner_channel("status", team.organization_id), 1)
        event = StatusEvent(team.device.id, team.organization_id, "ONLINE", None)
        await publish(redis, event)
        data = await ws.next_data()
    assert data["deviceStatusChanged"]["id"] == team.device.id
    assert data["deviceStatusChanged"]["status"] == "ONLINE"


async def test_outsider_feed_gets_nothing_of_organization(
    api: Api, api_server: str, redis: Redis
) -> None:
    team = await make_team(api)
    own = await create_org_device(api, team.outsider, None, name="own")
    async with client(api_server, team.outsider) as ws:
        await ws.subscribe("1", op("ReadingAdded"))
        await wait_numsub(redis, owner_channel("readings", team.outsider.user_id), 1)
        await publish(redis, reading_event(team.device.id, team.organization_id, 1.0))
        # Even forged onto the outsider's own channel, the per-event check withholds it.
        forged = reading_event(team.device.id, team.organization_id, 1.5)
        await redis.publish(owner_channel("readings", team.outsider.user_id), forged.encode())
        await publish(redis, reading_event(own.id, team.outsider.user_id, 2.0))
        assert await ws.next_data() == expected_reading(own.id, 2.0)


async def test_alerts_of_organization_device_for_members_acknowledge_by_role(
    api: Api, api_server: str, redis: Redis
) -> None:
    team = await make_team(api)
    alert = await open_alert(
        NewAlert(
            # As the worker names it: the device's organization.
            owner_id=team.organization_id,
            device_id=team.device.id,
            rule_id=None,
            kind=AlertKind.ANOMALY,
            metric="temp",
            value=99.0,
            message="temp = 99",
            severity=Severity.CRITICAL,
            open_key=None,
        )
    )
    assert alert is not None and str(alert.organization_id) == team.organization_id
    async with client(api_server, team.viewer) as ws:
        await ws.subscribe("1", op("AlertRaised"))
        await wait_numsub(redis, alert_owner_channel(team.organization_id), 1)
        await publish_alert_event(redis, alert_event(alert, "raised", origin="test"))
        data = await ws.next_data()
    assert data["alertRaised"]["id"] == str(alert.id)
    listed = {
        who: await api.execute(op("Alerts"), {}, token=team.session(who).access_token)
        for who in ("owner", "viewer", "outsider")
    }
    assert [e["node"]["id"] for e in listed["viewer"].data["alerts"]["edges"]] == [str(alert.id)]
    assert listed["outsider"].data["alerts"]["edges"] == []
    by_viewer = await api.execute(
        op("AcknowledgeAlert"), {"id": str(alert.id)}, token=team.viewer.access_token
    )
    assert by_viewer.code == "FORBIDDEN"
    by_outsider = await api.execute(
        op("AcknowledgeAlert"), {"id": str(alert.id)}, token=team.outsider.access_token
    )
    assert by_outsider.code == "NOT_FOUND"
    by_operator = await api.execute(
        op("AcknowledgeAlert"), {"id": str(alert.id)}, token=team.operator.access_token
    )
    assert by_operator.data["acknowledgeAlert"]["state"] == "ACKNOWLEDGED"
