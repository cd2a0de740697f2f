"""Alert e-mails through a real SMTP server: the worker queues them per the owner's
preferences (verified address, minSeverity, deviceIds), an API process sends them, and
reminders follow while the alert stays ACTIVE."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import aiomqtt
from beanie import PydanticObjectId

from ingest.worker import IngestWorker
from models.accounts import utcnow
from models.email import AlertReminder, OutboxMail
from services.notifications import reminder_id
from tests.client import Api
from tests.contract import op
from tests.factories import Session, create_device, register
from tests.integration.alerts.conftest import alerts_of, eventually, rule_applied, send, settled
from tests.integration.alerts.test_evaluation import threshold_rule
from tests.integration.email.helpers import verified_user
from tests.integration.organizations import add_member, create_org_device, create_organization
from tests.smtp import QUIET_SECONDS, SmtpServer

ALERT_SUBJECT = ("INFO alert", "WARNING alert", "CRITICAL alert")


async def preferences(api: Api, session: Session, **fields: Any) -> Any:
    variables = {"email": True, **fields}
    return await api.execute(
        op("SetNotificationPreferences"), variables, token=session.access_token
    )


async def alerting_device(
    api: Api,
    session: Session,
    worker: IngestWorker,
    publisher: aiomqtt.Client,
    *,
    name: str,
    severity: str,
) -> str:
    """A device whose max-30 rule of `severity` is applied; its id."""
    device = await create_device(api, session, name=name)
    rule = await threshold_rule(api, session, device.id, max=30.0, severity=severity)
    await rule_applied(worker, device.id, rule["id"])
    return device.id


async def raise_on(publisher: aiomqtt.Client, worker: IngestWorker, device_id: str) -> str:
    """Send an out-of-range value; the raised alert's id once stored (and its mail queued)."""
    await send(publisher, device_id, "temp", [42.0])
    await settled(worker, device_id, 1)
    [alert] = await alerts_of(device_id)
    return str(alert.id)


def alert_mails(smtp: SmtpServer, address: str) -> list[Any]:
    return [m for m in smtp.to(address) if "alert on" in m.subject]


async def test_mail_alerts_at_or_above_min_severity(
    api: Api, worker: IngestWorker, publisher: aiomqtt.Client, smtp_server: SmtpServer
) -> None:
    user = await verified_user(api, smtp_server)
    saved = await preferences(api, user, minSeverity="WARNING")
    assert saved.data["setNotificationPreferences"] == {
        "email": True,
        "minSeverity": "WARNING",
        "deviceIds": None,
        "remindAfterMinutes": None,
    }
    quiet = await alerting_device(api, user, worker, publisher, name="hall", severity="INFO")
    loud = await alerting_device(api, user, worker, publisher, name="boiler", severity="CRITICAL")

    await raise_on(publisher, worker, quiet)
    loud_alert = await raise_on(publisher, worker, loud)

    [mail] = await smtp_server.wait_for(user.email, subject="CRITICAL alert")
    assert mail.subject == "CRITICAL alert on boiler: temp = 42, above max 30"
    assert f"http://console.test/console/alerts/{loud_alert}" in mail.text
    assert "Metric: temp = 42.0" in mail.text
    await asyncio.sleep(QUIET_SECONDS)  # several sender polls: the INFO alert's mail never comes
    assert [m.subject for m in alert_mails(smtp_server, user.email)] == [mail.subject]
    assert await OutboxMail.find({"kind": "alert"}).count() == 1


async def test_mail_alerts_of_listed_devices_only(
    api: Api, worker: IngestWorker, publisher: aiomqtt.Client, smtp_server: SmtpServer
) -> None:
    user = await verified_user(api, smtp_server)
    listed = await alerting_device(api, user, worker, publisher, name="listed", severity="INFO")
    other = await alerting_device(api, user, worker, publisher, name="other", severity="CRITICAL")
    saved = await preferences(api, user, deviceIds=[listed])
    assert saved.data["setNotificationPreferences"]["deviceIds"] == [listed]

    await raise_on(publisher, worker, other)
    await raise_on(publisher, worker, listed)

    [mail] = await smtp_server.wait_for(user.email, subject="INFO alert")
    assert "on listed" in mail.subject
    await asyncio.sleep(QUIET_SECONDS)
    assert len(alert_mails(smtp_server, user.email)) == 1


async def test_no_alert_mail_to_unverified_address(
    api: Api, worker: IngestWorker, publisher: aiomqtt.Client, smtp_server: SmtpServer
) -> None:
    user = await register(api)  # its verification link is never used
    assert (await preferences(api, user)).codes == []
    device = await alerting_device(api, user, worker, publisher, name="d", severity="CRITICAL")

    await raise_on(publisher, worker, device)

    await asyncio.sleep(QUIET_SECONDS)
    assert alert_mails(smtp_server, user.email) == []
    assert await OutboxMail.find({"kind": "alert"}).count() == 0


async def test_no_alert_mail_without_preferences_or_with_email_off(
    api: Api, worker: IngestWorker, publisher: aiomqtt.Client, smtp_server: SmtpServer
) -> None:
    never_set = await verified_user(api, smtp_server)
    switched_off = await verified_user(api, smtp_server)
    assert (await preferences(api, switched_off, email=False)).codes == []
    first = await alerting_device(api, never_set, worker, publisher, name="a", severity="CRITICAL")
    second = await alerting_device(
        api, switched_off, worker, publisher, name="b", severity="CRITICAL"
    )

    await raise_on(publisher, worker, first)
    await raise_on(publisher, worker, second)

    await asyncio.sleep(QUIET_SECONDS)
    assert await OutboxMail.find({"kind": "alert"}).count() == 0
    assert alert_mails(smtp_server, never_set.email) == []
    assert alert_mails(smtp_server, switched_off.email) == []


async def test_refuse_preferences_naming_another_users_device(
    api: Api, smtp_server: SmtpServer
) -> None:
    owner = await register(api)
    attacker = await register(api)
    device = await create_device(api, owner)
    own = await create_device(api, attacker)

    theirs = await preferences(api, attacker, deviceIds=[own.id, device.id])
    missing = await preferences(api, attacker, deviceIds=[str(PydanticObjectId())])
    malformed = await preferences(api, attacker, deviceIds=["nope"])
    anonymous = await api.execute(op("SetNotificationPreferences"), {"email": True})

    assert theirs.codes == missing.codes == ["NOT_FOUND"]
    assert theirs.message == missing.message  # the same answer: existence is not revealed
    assert malformed.codes == ["BAD_USER_INPUT"]
    assert anonymous.codes == ["UNAUTHENTICATED"]


async def test_refuse_preferences_bad_reminder_interval(api: Api) -> None:
    user = await register(api)

    answers = [
        await preferences(api, user, remindAfterMinutes=minutes) for minutes in (0, -5, 10081)
    ]

    assert [a.codes for a in answers] == [["BAD_USER_INPUT"]] * 3


async def test_remind_while_alert_stays_active(
    api: Api, worker: IngestWorker, publisher: aiomqtt.Client, smtp_server: SmtpServer
) -> None:
    user = await verified_user(api, smtp_server)
    assert (await preferences(api, user, remindAfterMinutes=1)).codes == []
    device = await alerting_device(api, user, worker, publisher, name="pump", severity="WARNING")
    alert_id = await raise_on(publisher, worker, device)
    await smtp_server.wait_for(user.email, subject="WARNING alert")
    reminder = await AlertReminder.get(reminder_of(alert_id, user))
    assert reminder is not None and reminder.alert_id == PydanticObjectId(alert_id)
    assert timedelta(seconds=55) < reminder.next_due_at - utcnow() <= timedelta(minutes=1)

    # Several reminder checks (every 0.5 s) before the minute is up: no reminder.
    await asyncio.sleep(QUIET_SECONDS + 0.5)
    assert smtp_server.to(user.email, "[reminder]") == []

    async def minute_passes() -> None:
        await make_due(reminder_of(alert_id, user))

    await minute_passes()
    [first] = await smtp_server.wait_for(user.email, subject="[reminder]")
    assert "reminder 1" in first.text
    assert f"/console/alerts/{alert_id}" in first.text
    rescheduled = await AlertReminder.get(reminder_of(alert_id, user))
    assert rescheduled is not None and rescheduled.reminders == 1
    assert rescheduled.next_due_at - utcnow() > timedelta(seconds=55)

    await minute_passes()
    await smtp_server.wait_for(user.email, 2, subject="[reminder]")

    acknowledged = await api.execute(
        op("AcknowledgeAlert"), {"id": alert_id}, token=user.access_token
    )
    assert acknowledged.codes == []
    await minute_passes()
    # No longer ACTIVE: the check drops its reminder instead of sending one.
    await eventually(
        lambda: _gone(reminder_of(alert_id, user)),
        what="the reminder of the acknowledged alert dropped",
    )
    assert len(smtp_server.to(user.email, "[reminder]")) == 2


def reminder_of(alert_id: str, user: Session) -> PydanticObjectId:
    """The id of `user`'s reminders of the alert."""
    return reminder_id(PydanticObjectId(alert_id), PydanticObjectId(user.user_id))


async def make_due(reminder: PydanticObjectId) -> None:
    """The reminder's interval has passed (its due time moved into the past)."""
    await AlertReminder.get_pymongo_collection().update_one(
        {"_id": reminder}, {"$set": {"next_due_at": utcnow() - timedelta(seconds=1)}}
    )


async def _gone(reminder: PydanticObjectId) -> bool:
    return await AlertReminder.get(reminder) is None


async def test_no_reminder_without_remind_after_minutes(
    api: Api, worker: IngestWorker, publisher: aiomqtt.Client, smtp_server: SmtpServer
) -> None:
    user = await verified_user(api, smtp_server)
    assert (await preferences(api, user)).codes == []
    device = await alerting_device(api, user, worker, publisher, name="x", severity="WARNING")

    await raise_on(publisher, worker, device)

    await smtp_server.wait_for(user.email, subject="WARNING alert")
    assert await AlertReminder.count() == 0


async def test_raise_alert_with_smtp_server_down_mail_follows(
    api: Api, worker: IngestWorker, publisher: aiomqtt.Client, smtp_server: SmtpServer
) -> None:
    user = await verified_user(api, smtp_server)
    assert (await preferences(api, user)).codes == []
    device = await alerting_device(api, user, worker, publisher, name="tank", severity="WARNING")
    smtp_server.stop()
    try:
        # The worker stores and publishes as usual: it only writes the outbox entry.
        alert_id = await asyncio.wait_for(raise_on(publisher, worker, device), 10)

        async def retried() -> bool:
            mail = await OutboxMail.find_one({"kind": "alert"})
            return mail is not None and mail.attempts >= 2 and mail.state == "pending"

        await eventually(retried, what="the alert mail retried while SMTP is down")
    finally:
        smtp_server.start()

    [mail] = await smtp_server.wait_for(user.email, subject="WARNING alert")
    assert f"/console/alerts/{alert_id}" in mail.text


async def test_alert_of_shared_organization_mailed_to_each_member_per_own_preferences(
    api: Api, worker: IngestWorker, publisher: aiomqtt.Client, smtp_server: SmtpServer
) -> None:
    owner = await verified_user(api, smtp_server)
    viewer = await verified_user(api, smtp_server)
    operator = await verified_user(api, smtp_server)
    outsider = await verified_user(api, smtp_server)
    organization_id = await create_organization(api, owner)
    await add_member(api, owner, organization_id, viewer, "VIEWER")
    await add_member(api, owner, organization_id, operator, "OPERATOR")
    device = await create_org_device(api, owner, organization_id, "greenhouse")
    quiet = await create_org_device(api, owner, organization_id, "shed")
    # Each member's own preferences: a VIEWER may list the organization's devices.
    assert (await preferences(api, owner)).codes == []
    listed = await preferences(api, viewer, minSeverity="WARNING", deviceIds=[device.id])
    assert listed.data["setNotificationPreferences"]["deviceIds"] == [device.id]
    assert (await preferences(api, operator, email=False)).codes == []
    assert (await preferences(api, outsider)).codes == []
    for target, severity in ((device, "CRITICAL"), (quiet, "INFO")):
        rule = await threshold_rule(api, owner, target.id, max=30.0, severity=severity)
        await rule_applied(worker, target.id, rule["id"])

    await raise_on(publisher, worker, quiet.id)  # INFO, another device: the owner's only
    alert_id = await raise_on(publisher, worker, device.id)

    [to_viewer] = await smtp_server.wait_for(viewer.email, subject="CRITICAL alert")
    assert to_viewer.subject == "CRITICAL alert on greenhouse: temp = 42, above max 30"
    assert f"/console/alerts/{alert_id}" in to_viewer.text
    await smtp_server.wait_for(owner.email, subject="CRITICAL alert")
    await smtp_server.wait_for(owner.email, subject="INFO alert on shed")
    await asyncio.sleep(QUIET_SECONDS)
    assert len(alert_mails(smtp_server, owner.email)) == 2
    assert len(alert_mails(smtp_server, viewer.email)) == 1
    assert alert_mails(smtp_server, operator.email) == []
    assert alert_mails(smtp_server, outsider.email) == []
    assert await OutboxMail.find({"kind": "alert"}).count() == 3


async def test_removed_member_gets_no_more_reminders_others_still_do(
    api: Api, worker: IngestWorker, publisher: aiomqtt.Client, smtp_server: SmtpServer
) -> None:
    owner = await verified_user(api, smtp_server)
    viewer = await verified_user(api, smtp_server)
    organization_id = await create_organization(api, owner)
    await add_member(api, owner, organization_id, viewer, "VIEWER")
    device = await create_org_device(api, owner, organization_id, "boiler")
    for member in (owner, viewer):
        assert (await preferences(api, member, remindAfterMinutes=1)).codes == []
    rule = await threshold_rule(api, owner, device.id, max=30.0, severity="WARNING")
    await rule_applied(worker, device.id, rule["id"])
    alert_id = await raise_on(publisher, worker, device.id)
    for member in (owner, viewer):
        await smtp_server.wait_for(member.email, subject="WARNING alert")
        assert await AlertReminder.get(reminder_of(alert_id, member)) is not None

    removed = await api.execute(
        op("RemoveMember"),
        {"organizationId": organization_id, "userId": viewer.user_id},
        token=owner.access_token,
    )
    assert removed.codes == []
    for member in (owner, viewer):
        await make_due(reminder_of(alert_id, member))

    [reminder] = await smtp_server.wait_for(owner.email, subject="[reminder]")
    assert "reminder 1" in reminder.text
    await eventually(
        lambda: _gone(reminder_of(alert_id, viewer)),
        what="the removed member's reminder dropped",
    )
    assert smtp_server.to(viewer.email, "[reminder]") == []
    kept = await AlertReminder.get(reminder_of(alert_id, owner))
    assert kept is not None and kept.reminders == 1


async def test_reminder_stored_before_organizations_still_reminds(
    api: Api, worker: IngestWorker, publisher: aiomqtt.Client, smtp_server: SmtpServer
) -> None:
    user = await verified_user(api, smtp_server)
    assert (await preferences(api, user, remindAfterMinutes=1)).codes == []
    device = await alerting_device(api, user, worker, publisher, name="old", severity="WARNING")
    alert_id = await raise_on(publisher, worker, device)
    await smtp_server.wait_for(user.email, subject="WARNING alert")
    # As the previous release stored it: the alert's id as its own, no alert_id.
    collection = AlertReminder.get_pymongo_collection()
    await collection.delete_one({"_id": reminder_of(alert_id, user)})
    await collection.insert_one(
        {
            "_id": PydanticObjectId(alert_id),
            "user_id": PydanticObjectId(user.user_id),
            "next_due_at": utcnow() - timedelta(seconds=1),
            "last_mailed_at": utcnow() - timedelta(minutes=1),
            "reminders": 0,
        }
    )

    [reminder] = await smtp_server.wait_for(user.email, subject="[reminder]")
    assert f"/console/alerts/{alert_id}" in reminder.text
    legacy = await AlertReminder.get(PydanticObjectId(alert_id))
    assert legacy is not None and legacy.reminders == 1
