"""Join requests, member reads, bans and leaving, with Telegram's descriptions."""

from __future__ import annotations

import pytest

from telegram_sim.model import DEFAULT_BOT_ADMIN_RIGHTS
from telegram_sim.server import SimServer
from tests.sim.conftest import BotApiClient


def test_approve_makes_a_member_and_counts(api: BotApiClient, sim: SimServer) -> None:
    chat = sim.control.create_chat("supergroup", "Growth", members=2)
    before = api.ok("getChatMemberCount", chat_id=chat["id"])
    request = sim.control.join_request(chat["id"], {"first_name": "Ann", "username": "ann"}, bio="hi")
    user_id = request["user_id"]
    assert api.ok("getChatMember", chat_id=chat["id"], user_id=user_id)["status"] == "left"
    assert api.ok("approveChatJoinRequest", chat_id=chat["id"], user_id=user_id) is True
    assert api.ok("getChatMemberCount", chat_id=chat["id"]) == before + 1
    member = api.ok("getChatMember", chat_id=chat["id"], user_id=user_id)
    assert member == {"user": {"id": user_id, "is_bot": False, "first_name": "Ann", "username": "ann"},
                      "status": "member"}  # fmt: skip
    assert sim.control.chats()[0]["member_count"] == before + 1


def test_approve_twice_and_decline_without_request(api: BotApiClient, sim: SimServer) -> None:
    chat = sim.control.create_chat("group", "G")["id"]
    user_id = sim.control.join_request(chat)["user_id"]
    assert api.ok("approveChatJoinRequest", chat_id=chat, user_id=user_id)
    assert api.error("approveChatJoinRequest", chat_id=chat, user_id=user_id) == (
        400, "Bad Request: USER_ALREADY_PARTICIPANT", None)  # fmt: skip
    assert api.error("declineChatJoinRequest", chat_id=chat, user_id=user_id)[1] == (
        "Bad Request: USER_ALREADY_PARTICIPANT")  # fmt: skip
    stranger = sim.control.create_user("Zed")["id"]
    assert api.error("approveChatJoinRequest", chat_id=chat, user_id=stranger) == (
        400, "Bad Request: HIDE_REQUESTER_MISSING", None)  # fmt: skip
    assert api.error("declineChatJoinRequest", chat_id=chat, user_id=stranger)[1] == (
        "Bad Request: HIDE_REQUESTER_MISSING")  # fmt: skip


def test_decline_removes_the_request(api: BotApiClient, sim: SimServer) -> None:
    chat = sim.control.create_chat("supergroup", "S")["id"]
    user_id = sim.control.join_request(chat)["user_id"]
    assert api.ok("declineChatJoinRequest", chat_id=chat, user_id=user_id) is True
    assert sim.control.join_requests(chat) == []
    assert api.error("approveChatJoinRequest", chat_id=chat, user_id=user_id)[1] == (
        "Bad Request: HIDE_REQUESTER_MISSING")  # fmt: skip
    assert api.ok("getChatMember", chat_id=chat, user_id=user_id)["status"] == "left"


def test_approving_needs_can_invite_users(api: BotApiClient, sim: SimServer) -> None:
    rights = {**DEFAULT_BOT_ADMIN_RIGHTS, "can_invite_users": False}
    chat = sim.control.create_chat("supergroup", "S", bots={str(sim.bot.id): {"rights": rights}})["id"]
    user_id = sim.control.join_request(chat)["user_id"]
    assert api.error("approveChatJoinRequest", chat_id=chat, user_id=user_id) == (
        400, "Bad Request: CHAT_ADMIN_REQUIRED", None)  # fmt: skip
    sim.control.demote_bot(chat, sim.bot.id)
    assert api.error("approveChatJoinRequest", chat_id=chat, user_id=user_id)[1] == "Bad Request: CHAT_ADMIN_REQUIRED"


def test_bad_user_id(api: BotApiClient, sim: SimServer) -> None:
    chat = sim.control.create_chat("supergroup", "S")["id"]
    assert api.error("approveChatJoinRequest", chat_id=chat, user_id="abc") == (
        400, "Bad Request: invalid user_id specified", None)  # fmt: skip
    assert api.error("getChatMember", chat_id=chat, user_id=0)[1] == "Bad Request: invalid user_id specified"
    assert api.error("getChatMember", chat_id=chat, user_id=987654321)[1] == "Bad Request: user not found"


def test_chat_member_variants(api: BotApiClient, sim: SimServer) -> None:
    chat = sim.control.create_chat(
        "supergroup", "Roles", owner={"id": 501, "first_name": "Owner"},
        admins=[{"user": 502}], members=[{"user": 503, "status": "restricted", "rights": {"can_send_messages": True}}],
    )["id"]  # fmt: skip
    owner = api.ok("getChatMember", chat_id=chat, user_id=501)
    assert owner["status"] == "creator" and owner["is_anonymous"] is False
    admin = api.ok("getChatMember", chat_id=chat, user_id=502)
    assert admin["status"] == "administrator" and admin["can_be_edited"] is False
    assert admin["can_restrict_members"] is True and "can_post_messages" not in admin
    restricted = api.ok("getChatMember", chat_id=chat, user_id=503)
    assert restricted["status"] == "restricted" and restricted["is_member"] is True
    assert restricted["can_send_messages"] is True and restricted["can_send_photos"] is False
    assert restricted["until_date"] == 0
    me = api.ok("getChatMember", chat_id=chat, user_id=sim.bot.id)
    assert me["status"] == "administrator" and me["can_invite_users"] is True
    assert me["can_restrict_members"] is True and me["can_delete_messages"] is True
    admins = api.ok("getChatAdministrators", chat_id=chat)
    assert {a["user"]["id"] for a in admins} == {501, 502, sim.bot.id, sim.bots[1].id}


def test_ban_and_unban_in_a_supergroup(api: BotApiClient, sim: SimServer) -> None:
    chat = sim.control.create_chat("supergroup", "S", members=[701, 702])["id"]
    count = api.ok("getChatMemberCount", chat_id=chat)
    assert api.ok("banChatMember", chat_id=chat, user_id=701) is True
    assert api.ok("getChatMember", chat_id=chat, user_id=701) == {
        "user": {"id": 701, "is_bot": False, "first_name": sim.state.users[701].first_name},
        "status": "kicked", "until_date": 0}  # fmt: skip
    assert api.ok("getChatMemberCount", chat_id=chat) == count - 1
    assert api.ok("unbanChatMember", chat_id=chat, user_id=701, only_if_banned=True) is True
    assert api.ok("getChatMember", chat_id=chat, user_id=701)["status"] == "left"
    # only_if_banned leaves a current member alone; without it unban removes (the "kick" recipe)
    assert api.ok("unbanChatMember", chat_id=chat, user_id=702, only_if_banned=True) is True
    assert api.ok("getChatMember", chat_id=chat, user_id=702)["status"] == "member"
    assert api.ok("unbanChatMember", chat_id=chat, user_id=702) is True
    assert api.ok("getChatMember", chat_id=chat, user_id=702)["status"] == "left"


def test_ban_in_a_basic_group_removes_and_unban_is_refused(api: BotApiClient, sim: SimServer) -> None:
    chat = sim.control.create_chat("group", "G", members=[801])["id"]
    assert api.ok("banChatMember", chat_id=chat, user_id=801) is True
    assert api.ok("getChatMember", chat_id=chat, user_id=801)["status"] == "left"
    assert api.error("unbanChatMember", chat_id=chat, user_id=801) == (
        400, "Bad Request: method is available for supergroup and channel chats only", None)  # fmt: skip


@pytest.mark.parametrize("chat_type", ["group", "supergroup"])
def test_ban_owner_admin_and_without_rights(api: BotApiClient, sim: SimServer, chat_type: str) -> None:
    chat = sim.control.create_chat(chat_type, "G", owner=901, admins=[902], members=[903])["id"]
    assert api.error("banChatMember", chat_id=chat, user_id=901) == (400, "Bad Request: can't remove chat owner", None)
    assert api.error("banChatMember", chat_id=chat, user_id=902) == (
        400, "Bad Request: user is an administrator of the chat", None)  # fmt: skip
    sim.control.demote_bot(chat, sim.bot.id)
    assert api.error("banChatMember", chat_id=chat, user_id=903) == (
        400, "Bad Request: not enough rights to restrict/unrestrict chat member", None)  # fmt: skip
    if chat_type == "supergroup":
        assert api.error("unbanChatMember", chat_id=chat, user_id=903)[1] == (
            "Bad Request: not enough rights to restrict/unrestrict chat member")  # fmt: skip
        sim.control.promote_bot(chat, sim.bot.id)
        assert api.error("unbanChatMember", chat_id=chat, user_id=901)[1] == "Bad Request: can't remove chat owner"


def test_member_leaving_changes_the_count(api: BotApiClient, sim: SimServer) -> None:
    chat = sim.control.create_chat("supergroup", "S", members=[1001, 1002])["id"]
    count = api.ok("getChatMemberCount", chat_id=chat)
    sim.control.remove_member(chat, 1001)
    assert api.ok("getChatMemberCount", chat_id=chat) == count - 1
    sim.control.add_member(chat, 1001)
    assert api.ok("getChatMemberCount", chat_id=chat) == count


def test_leave_chat(api: BotApiClient, sim: SimServer) -> None:
    chat = sim.control.create_chat("supergroup", "S")["id"]
    assert api.ok("leaveChat", chat_id=chat) is True
    assert (
        api.error("sendMessage", chat_id=chat, text="x")[1] == "Forbidden: bot is not a member of the supergroup chat"
    )
    assert sim.control.chat(chat)["bots"][str(sim.bot.id)]["status"] == "left"


def test_get_chat_full_info(api: BotApiClient, sim: SimServer) -> None:
    chat = sim.control.create_chat("supergroup", "Public", username="publicgroup", description="About")["id"]
    info = api.ok("getChat", chat_id="@publicgroup")
    assert info["id"] == chat and info["type"] == "supergroup" and info["title"] == "Public"
    assert info["username"] == "publicgroup" and info["description"] == "About"
    assert info["permissions"]["can_send_messages"] is True and "accent_color_id" in info
    assert "all_members_are_administrators" not in info


def test_migration_carries_members_over(api: BotApiClient, sim: SimServer) -> None:
    chat = sim.control.create_chat("group", "Old", owner=1101, admins=[1102], members=[1103])["id"]
    new_id = sim.control.upgrade(chat)["id"]
    assert api.ok("getChatMember", chat_id=new_id, user_id=1101)["status"] == "creator"
    assert api.ok("getChatMember", chat_id=new_id, user_id=1102)["status"] == "administrator"
    assert api.ok("getChatMember", chat_id=new_id, user_id=1103)["status"] == "member"
    assert api.ok("getChatMember", chat_id=new_id, user_id=sim.bot.id)["can_invite_users"] is True
    assert api.error("approveChatJoinRequest", chat_id=chat, user_id=1103)[2] == {"migrate_to_chat_id": new_id}
