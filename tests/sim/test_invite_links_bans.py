"""Invite links and bans in the simulator, as Telegram does them, and the same objects and errors for
python-telegram-bot as for our client (the parity harness of test_third_party_parity.py)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import telegram
import telegram.error as ptb

from telegram_sim.control import SimControlError
from telegram_sim.server import SimServer
from tests.client.cases import Call, Case, World
from tests.sim.test_third_party_parity import _redact_ptb_logs as _redact_ptb_logs  # autouse fixture
from tests.sim.test_third_party_parity import contained, ptb_message, run_ours, run_ptb, shape
from workers import telegram_errors as ours

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


def bot_api(sim: SimServer, method: str, **params: Any) -> Any:
    return httpx.post(sim.api_url(method), json=params, timeout=10).json()


def _create(**extra: Any) -> Any:
    def setup(w: World) -> Call:
        return Call("createChatInviteLink", {"chat_id": w.chat(), "name": "ads", **extra})

    return setup


def _no_invite_right(w: World) -> Call:
    chat_id = w.chat(bots={str(w.bot_id): {"status": "administrator", "rights": {"can_restrict_members": True}}})
    return Call("createChatInviteLink", {"chat_id": chat_id, "name": "ads", "creates_join_request": True})


def _on_link(sim: SimServer, method: str, *, known: bool = True) -> Any:
    def setup(w: World) -> Call:
        chat_id = w.chat()
        url = "https://t.me/+unknownunknown000"
        if known:
            url = bot_api(sim, "createChatInviteLink", chat_id=chat_id, name="ads", creates_join_request=True)[
                "result"
            ]["invite_link"]
        params: dict[str, Any] = {"chat_id": chat_id, "invite_link": url}
        if method == "editChatInviteLink":
            params["name"] = "renamed"
        return Call(method, params)

    return setup


def cases(sim: SimServer) -> list[Case]:
    def link_ok(result: Any, w: World) -> None:
        assert result["name"] == "ads" and result["creates_join_request"] is True and result["is_revoked"] is False

    return [
        Case("createChatInviteLink", _create(creates_join_request=True), None, None, link_ok),
        Case(
            "createChatInviteLink join requests with a member limit",
            _create(creates_join_request=True, member_limit=5),
            ours.BadRequest,
            ptb.BadRequest,
        ),
        Case("createChatInviteLink without the invite right", _no_invite_right, ours.ChatAdminRequired, ptb.BadRequest),
        Case("createChatInviteLink expiry in the past", _create(expire_date=1000), ours.BadRequest, ptb.BadRequest),
        Case(
            "revokeChatInviteLink",
            _on_link(sim, "revokeChatInviteLink"),
            None,
            None,
            lambda r, w: None if r["is_revoked"] is True else pytest.fail("not revoked"),
        ),
        Case(
            "editChatInviteLink",
            _on_link(sim, "editChatInviteLink"),
            None,
            None,
            lambda r, w: None if r["name"] == "renamed" else pytest.fail("not renamed"),
        ),
        Case(
            "revoke an unknown link",
            _on_link(sim, "revokeChatInviteLink", known=False),
            ours.BadRequest,
            ptb.BadRequest,
        ),
    ]


def links_out(value: Any) -> Any:
    """A link's URL is random in each world: compare its form, not its value."""
    if isinstance(value, dict):
        return {k: ("t.me/+" if k == "invite_link" and "t.me/+" in str(v) else links_out(v)) for k, v in value.items()}
    return value


CASE_NAMES = [c.name for c in cases(SimServer.__new__(SimServer))]


@pytest.mark.parametrize("name", CASE_NAMES)
async def test_invite_links_same_outcome_as_python_telegram_bot(sim: SimServer, name: str) -> None:
    case = next(c for c in cases(sim) if c.name == name)
    world_ours, world_ptb = World(sim.control, sim.bot.id), World(sim.control, sim.bot.id)
    mine = await run_ours(sim, case.setup(world_ours), case)
    theirs = await run_ptb(sim, case.setup(world_ptb), case)
    if case.ours is None:
        assert not isinstance(mine, Exception) and not isinstance(theirs, Exception), (mine, theirs)
        assert contained(shape(links_out(mine)), shape(links_out(theirs))), (mine, theirs)
        if case.check:
            case.check(mine, world_ours)
            case.check(theirs, world_ptb)
        return
    assert type(mine) is case.ours and type(theirs) is case.ptb, (mine, theirs)
    assert isinstance(mine, ours.TelegramError) and isinstance(theirs, ptb.TelegramError)
    assert theirs.message == ptb_message(mine.description)


def test_error_texts(sim: SimServer) -> None:
    chat = sim.control.create_chat("supergroup", "G")["id"]
    assert bot_api(sim, "createChatInviteLink", chat_id=chat, creates_join_request=True, member_limit=3) == {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: member limit can't be specified for links requiring administrator approval",
    }
    assert bot_api(sim, "createChatInviteLink", chat_id=chat, expire_date=1)["description"] == (
        "Bad Request: EXPIRE_DATE_INVALID"
    )
    assert bot_api(sim, "createChatInviteLink", chat_id=chat, member_limit=100000)["description"] == (
        "Bad Request: USAGE_LIMIT_INVALID"
    )
    user = sim.control.create_user()["id"]
    assert bot_api(sim, "createChatInviteLink", chat_id=user)["description"] == "Bad Request: chat not found"
    assert bot_api(sim, "revokeChatInviteLink", chat_id=chat, invite_link="")["description"] == (
        "Bad Request: invite link must be non-empty"
    )


def test_requests_and_joins_carry_the_link_whole_only_for_its_creator(sim: SimServer) -> None:
    ctl = sim.control
    first = sim.bot
    second = ctl.create_bot()
    chat = ctl.create_chat("supergroup", "G")["id"]  # both bots administrators
    for bot_id in (first.id, second["id"]):
        sim.state.set_webhook(bot_id, "", allowed_updates=["chat_join_request", "chat_member"])
    created = bot_api(sim, "createChatInviteLink", chat_id=chat, name="ads", creates_join_request=True)["result"]
    url = created["invite_link"]
    user = ctl.join_request(chat, None, invite_link=url)["user_id"]
    (mine,) = [u for u in ctl.pending_updates(first.id) if "chat_join_request" in u]
    (other,) = [u for u in ctl.pending_updates(second["id"]) if "chat_join_request" in u]
    assert mine["chat_join_request"]["invite_link"]["invite_link"] == url
    assert mine["chat_join_request"]["invite_link"]["pending_join_request_count"] == 1
    truncated = other["chat_join_request"]["invite_link"]["invite_link"]
    assert truncated.endswith("...") and url.startswith(truncated[:-3]) and truncated != url
    # python-telegram-bot reads the update as a ChatJoinRequest with its link.
    update = telegram.Update.de_json(mine, telegram.Bot(sim.token))
    assert update is not None and update.chat_join_request is not None
    link = update.chat_join_request.invite_link
    assert link is not None and link.name == "ads" and link.creates_join_request is True
    # Approved: the chat_member update carries the link too (and via_join_request).
    assert bot_api(sim, "approveChatJoinRequest", chat_id=chat, user_id=user)["ok"] is True
    (joined,) = [u["chat_member"] for u in ctl.pending_updates(first.id) if "chat_member" in u]
    assert joined["invite_link"]["invite_link"] == url and joined["via_join_request"] is True
    assert joined["new_chat_member"]["status"] == "member"
    # Revoked: nobody can use it any more.
    assert bot_api(sim, "revokeChatInviteLink", chat_id=chat, invite_link=url)["result"]["is_revoked"] is True
    with pytest.raises(SimControlError, match="INVITE_HASH_EXPIRED"):
        ctl.join_request(chat, None, invite_link=url)
    assert [link["is_revoked"] for link in ctl.invite_links(chat)] == [True]


def test_a_link_without_join_requests_admits_at_once_with_the_link(sim: SimServer) -> None:
    ctl = sim.control
    chat = ctl.create_chat("supergroup", "G")["id"]
    sim.state.set_webhook(sim.bot.id, "", allowed_updates=["chat_member"])
    url = bot_api(sim, "createChatInviteLink", chat_id=chat, name="open")["result"]["invite_link"]
    with pytest.raises(SimControlError, match="does not create join requests"):
        ctl.join_request(chat, None, invite_link=url)
    user = ctl.create_user()["id"]
    ctl.join_via_link(chat, user, url)
    (joined,) = [u["chat_member"] for u in ctl.pending_updates(sim.bot.id) if "chat_member" in u]
    assert joined["invite_link"]["name"] == "open" and "via_join_request" not in joined


def test_banned_user_cannot_request_or_join_and_until_date_ends_the_ban(sim: SimServer) -> None:
    ctl = sim.control
    chat = ctl.create_chat("supergroup", "G")["id"]
    user = ctl.create_user()["id"]
    now = sim.state.now()
    assert bot_api(sim, "banChatMember", chat_id=chat, user_id=user, until_date=now + 3600)["ok"] is True
    assert ctl.bans(chat) == [{"user_id": user, "until_date": now + 3600}]
    with pytest.raises(SimControlError, match="banned"):
        ctl.join_request(chat, user)
    link = bot_api(sim, "createChatInviteLink", chat_id=chat)["result"]["invite_link"]
    with pytest.raises(SimControlError, match="banned"):
        ctl.join_via_link(chat, user, link)
    member = bot_api(sim, "getChatMember", chat_id=chat, user_id=user)["result"]
    assert member["status"] == "kicked" and member["until_date"] == now + 3600
    # Time passes beyond until_date: Telegram lifts the ban by itself.
    clock = sim.state.clock
    sim.state.clock = lambda: clock() + 3601
    try:
        assert bot_api(sim, "getChatMember", chat_id=chat, user_id=user)["result"]["status"] == "left"
        assert ctl.bans(chat) == []
        ctl.join_request(chat, user)  # allowed again
    finally:
        sim.state.clock = clock
    # unbanChatMember with only_if_banned leaves a member who is not banned alone.
    member_id = ctl.create_user()["id"]
    ctl.add_member(chat, member_id)
    assert bot_api(sim, "unbanChatMember", chat_id=chat, user_id=member_id, only_if_banned=True)["ok"] is True
    assert bot_api(sim, "getChatMember", chat_id=chat, user_id=member_id)["result"]["status"] == "member"
    assert bot_api(sim, "banChatMember", chat_id=chat, user_id=member_id)["ok"] is True
    assert bot_api(sim, "unbanChatMember", chat_id=chat, user_id=member_id, only_if_banned=True)["ok"] is True
    assert bot_api(sim, "getChatMember", chat_id=chat, user_id=member_id)["result"]["status"] == "left"
