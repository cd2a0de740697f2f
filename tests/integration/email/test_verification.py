"""Registration sends a verification e-mail to a real SMTP server; its link's token
confirms the address once."""

from __future__ import annotations

from datetime import timedelta

from models.accounts import User, utcnow
from models.email import EmailToken
from tests.client import Api
from tests.contract import op
from tests.factories import PASSWORD, register
from tests.smtp import SmtpServer

ME = "query { me { email emailVerified } }"


async def test_register_sends_verification_mail_and_verify_email_confirms(
    api: Api, smtp_server: SmtpServer
) -> None:
    user = await register(api)
    assert (await api.execute(ME, token=user.access_token)).data["me"]["emailVerified"] is False

    [mail] = await smtp_server.wait_for(user.email)
    assert mail.subject == "Confirm your e-mail address"
    assert mail.recipients == [user.email]
    assert "http://console.test/console/verify?token=" in mail.text
    verified = await api.execute(op("VerifyEmail"), {"token": mail.token("verify")})

    assert verified.data["verifyEmail"] == {
        "id": user.user_id,
        "email": user.email,
        "emailVerified": True,
    }
    assert (await api.execute(ME, token=user.access_token)).data["me"]["emailVerified"] is True


async def test_verify_email_token_works_once(api: Api, smtp_server: SmtpServer) -> None:
    user = await register(api)
    [mail] = await smtp_server.wait_for(user.email)
    token = mail.token("verify")
    assert (await api.execute(op("VerifyEmail"), {"token": token})).codes == []

    again = await api.execute(op("VerifyEmail"), {"token": token})

    assert again.codes == ["UNAUTHENTICATED"]


async def test_refuse_verify_email_bad_or_expired_token(api: Api, smtp_server: SmtpServer) -> None:
    user = await register(api)
    [mail] = await smtp_server.wait_for(user.email)
    await EmailToken.get_pymongo_collection().update_many(
        {}, {"$set": {"expires_at": utcnow() - timedelta(seconds=1)}}
    )

    expired = await api.execute(op("VerifyEmail"), {"token": mail.token("verify")})
    bad = await api.execute(op("VerifyEmail"), {"token": "not-a-token"})

    assert expired.codes == bad.codes == ["UNAUTHENTICATED"]
    stored = await User.find_one(User.email == user.email)
    assert stored is not None and stored.email_verified is False


async def test_new_email_needs_verification_of_its_own(api: Api, smtp_server: SmtpServer) -> None:
    user = await register(api)
    [first] = await smtp_server.wait_for(user.email)
    assert (await api.execute(op("VerifyEmail"), {"token": first.token("verify")})).codes == []
    new_address = f"moved-{user.email}"

    changed = await api.execute(
        op("UpdateUser"),
        {"id": user.user_id, "email": new_address, "currentPassword": PASSWORD},
        token=user.access_token,
    )

    assert changed.codes == []
    assert (await api.execute(ME, token=user.access_token)).data["me"] == {
        "email": new_address,
        "emailVerified": False,
    }
    [second] = await smtp_server.wait_for(new_address)
    verified = await api.execute(op("VerifyEmail"), {"token": second.token("verify")})
    assert verified.data["verifyEmail"]["emailVerified"] is True


async def test_refuse_verification_token_of_a_changed_address(
    api: Api, smtp_server: SmtpServer
) -> None:
    user = await register(api)
    [mail] = await smtp_server.wait_for(user.email)
    await api.execute(
        op("UpdateUser"),
        {"id": user.user_id, "email": f"other-{user.email}", "currentPassword": PASSWORD},
        token=user.access_token,
    )

    old_link = await api.execute(op("VerifyEmail"), {"token": mail.token("verify")})

    assert old_link.codes == ["UNAUTHENTICATED"]
    assert (await api.execute(ME, token=user.access_token)).data["me"]["emailVerified"] is False
