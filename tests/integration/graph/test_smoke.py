from tests.client import Api
from tests.contract import op
from tests.factories import register


async def test_register_first_user_becomes_admin(api: Api) -> None:
    first = await register(api)
    second = await register(api)
    assert first.role == "ADMIN"
    assert second.role == "USER"
    me = await api.execute(op("Me"), token=second.access_token)
    assert me.data["me"]["email"] == second.email
