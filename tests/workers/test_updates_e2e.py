"""The main worker end to end: simulator events → webhook → process_telegram_update → database / replies."""

from __future__ import annotations

from typing import Any

from workers.updates import BOTH_TEXT, GROUP_BOT_TEXT, MAIN_BOT_TEXT

from .harness import Stack


def _group(stack: Stack, group_id: int) -> dict[str, Any] | None:
    rows = stack.sql(
        "SELECT title, chat_type, phase, is_active, admin_user_id, bot_can_invite, deactivated_reason "
        "FROM managed_groups WHERE group_id = %s",
        (group_id,),
    )
    if not rows:
        return None
    keys = ("title", "chat_type", "phase", "is_active", "admin_user_id", "bot_can_invite", "deactivated_reason")
    return dict(zip(keys, rows[0], strict=True))


def _activity(stack: Stack, chat_id: int, user_id: int) -> str | None:
    return stack.scalar("SELECT status FROM member_activity WHERE chat_id = %s AND user_id = %s", (chat_id, user_id))


def _owner(chat: dict[str, Any]) -> int:
    return next(m["user"]["id"] for m in chat["members"] if m["status"] == "creator")


def test_bot_membership_registers_renames_and_deactivates_groups(stack: Stack) -> None:
    ctl = stack.ctl
    stack.start_worker("main")
    chat = ctl.create_chat("supergroup", "Growth group", bots=[], members=2)
    owner = _owner(chat)
    ctl.promote_bot(chat["id"], stack.tgms_bot_id)
    group: Any = stack.wait_for(lambda: _group(stack, chat["id"]), what="group registered")
    assert group == {
        "title": "Growth group",
        "chat_type": "supergroup",
        "phase": "growth",
        "is_active": True,
        "admin_user_id": owner,
        "bot_can_invite": True,
        "deactivated_reason": None,
    }

    # The main bot's own membership does not register anything.
    other = ctl.create_chat("group", "Main bot only", bots=[])
    ctl.promote_bot(other["id"], stack.main_bot_id)
    # Promoted without the invite right: known, but not active (it could not approve join requests).
    no_invite = ctl.create_chat("group", "No invite", bots=[])
    ctl.promote_bot(no_invite["id"], stack.tgms_bot_id, rights={"can_manage_chat": True, "can_invite_users": False})
    group = stack.wait_for(lambda: _group(stack, no_invite["id"]), what="no-invite group")
    assert group["is_active"] is False and group["chat_type"] == "group"
    assert "cannot invite users" in group["deactivated_reason"]

    ctl.set_title(chat["id"], "Renamed")
    stack.wait_for(lambda: (_group(stack, chat["id"]) or {}).get("title") == "Renamed", what="title")

    ctl.kick_bot(chat["id"], stack.tgms_bot_id)
    group = stack.wait_for(lambda: (g := _group(stack, chat["id"])) and not g["is_active"] and g,
                           what="deactivated")  # fmt: skip
    assert group["deactivated_reason"] == f"bot was kicked from the group by user {owner}"

    # Added back as an administrator: active again (the deactivation was the bot's absence, not an operator).
    ctl.promote_bot(chat["id"], stack.tgms_bot_id)
    stack.wait_for(lambda: (_group(stack, chat["id"]) or {}).get("is_active") is True, what="reactivated")
    # An operator's decision is not undone by a rights change.
    stack.sql("UPDATE managed_groups SET is_active = false, deactivated_reason = 'deactivated by an operator' "
              "WHERE group_id = %s", (chat["id"],))  # fmt: skip
    ctl.promote_bot(chat["id"], stack.tgms_bot_id, rights={"can_invite_users": True, "can_restrict_members": True})
    stack.wait_jobs_idle("process_telegram_update")
    assert (_group(stack, chat["id"]) or {}).get("deactivated_reason") == "deactivated by an operator"

    ctl.demote_bot(no_invite["id"], stack.tgms_bot_id)
    stack.wait_for(
        lambda: "no longer an administrator" in str((_group(stack, no_invite["id"]) or {}).get("deactivated_reason")),
        what="demoted",
    )
    stack.wait_jobs_idle("process_telegram_update")
    assert _group(stack, other["id"]) is None
    assert stack.scalar("SELECT count(*) FROM jobs WHERE status = 'failed'") == 0
    # The seed's health query sees the main worker, alive and busy.
    stack.wait_for(lambda: stack.sql("SELECT status, jobs_done > 0, last_activity IS NOT NULL FROM bot_health "
                                     "WHERE bot_name = 'main_worker'") == [("running", True, True)],
                   what="main_worker health with jobs done (written at each heartbeat)")  # fmt: skip


def test_member_activity_from_messages_joins_and_leaves(stack: Stack) -> None:
    ctl = stack.ctl
    stack.start_worker("main")
    chat = ctl.create_chat(
        "supergroup", "Chatty", bots=[stack.tgms_bot_id], members=[{"id": 901, "username": "a"}, {"id": 902}]
    )
    stack.add_group(chat)
    unmanaged = ctl.create_chat("supergroup", "Not ours", bots=[stack.tgms_bot_id], members=[903])
    ctl.post_message(chat["id"], 901, "hello")
    ctl.post_message(unmanaged["id"], 903, "hi")
    ctl.add_member(chat["id"], 904)
    ctl.remove_member(chat["id"], 902)
    stack.wait_for(lambda: _activity(stack, chat["id"], 902) == "left", what="leave recorded")
    stack.wait_for(lambda: _activity(stack, chat["id"], 901) == "member", what="message recorded")
    assert _activity(stack, chat["id"], 904) == "member"
    stack.wait_jobs_idle("process_telegram_update")
    assert stack.scalar("SELECT count(*) FROM member_activity WHERE chat_id = %s", (unmanaged["id"],)) == 0
    assert stack.scalar("SELECT username FROM member_activity WHERE chat_id = %s AND user_id = 901",
                        (chat["id"],)) == "a"  # fmt: skip
    seen = stack.scalar("SELECT last_seen_at > now() - interval '1 minute' FROM member_activity "
                        "WHERE chat_id = %s AND user_id = 901", (chat["id"],))  # fmt: skip
    assert seen is True


def test_start_and_help_are_answered_by_the_bot_that_received_them(stack: Stack) -> None:
    ctl = stack.ctl
    stack.start_worker("main")
    ctl.private_message(777001, "/start", bot=stack.tgms_bot_id)
    ctl.private_message(777002, "/start", bot=stack.main_bot_id)
    ctl.private_message(777002, "/help@whatever", bot=stack.main_bot_id)
    ctl.private_message(777002, "just chatting", bot=stack.main_bot_id)
    stack.wait_for(lambda: len(stack.calls("sendMessage", ok=True)) >= 3, what="three answers")
    stack.wait_jobs_idle("process_telegram_update")
    answers = [(c["chat_id"], c["bot_id"], c["params"]["text"]) for c in stack.calls("sendMessage")]
    # Each bot says what it does: only the group-management bot asks to be made an administrator.
    main_text = MAIN_BOT_TEXT.format(group_bot=f"@{stack.sim.bots[1].username}")
    assert sorted(answers) == sorted(
        [
            (777001, stack.tgms_bot_id, GROUP_BOT_TEXT),
            (777002, stack.main_bot_id, main_text),
            (777002, stack.main_bot_id, main_text),
        ]
    )
    assert "administrator" in GROUP_BOT_TEXT and "not me" in main_text and "I do not manage groups" in main_text


def test_one_bot_in_both_roles_says_it_does_both(stack: Stack) -> None:
    stack.start_worker("main", BOT_TOKEN=stack.tgms_token)
    stack.ctl.private_message(777003, "/start", bot=stack.tgms_bot_id)
    stack.wait_for(lambda: stack.calls("sendMessage", ok=True), what="the answer")
    assert [c["params"]["text"] for c in stack.calls("sendMessage")] == [BOTH_TEXT]
    assert "main bot and the group management bot" in BOTH_TEXT


def test_upgrade_to_supergroup_rewrites_the_group_id_everywhere(stack: Stack) -> None:
    ctl = stack.ctl
    stack.start_worker("main")
    chat = ctl.create_chat("group", "Basic", bots=[stack.tgms_bot_id], members=[911])
    stack.add_group(chat, phase="monitoring", final_message_allowed=True, inactivity_days=30)
    stack.sql("INSERT INTO member_count_history (group_id, member_count) VALUES (%s, 2)", (chat["id"],))
    ctl.post_message(chat["id"], 911, "before the upgrade")
    stack.wait_for(lambda: _activity(stack, chat["id"], 911), what="activity before")
    new = ctl.upgrade(chat["id"])
    stack.wait_for(lambda: _group(stack, new["id"]) and not _group(stack, chat["id"]), what="id rewritten")
    stack.wait_jobs_idle("process_telegram_update")
    row = stack.sql("SELECT phase, final_message_allowed, inactivity_days, chat_type, is_active FROM managed_groups")
    assert row == [("monitoring", True, 30, "supergroup", True)]
    assert _activity(stack, new["id"], 911) == "member"
    assert stack.scalar("SELECT count(*) FROM member_activity WHERE chat_id = %s", (chat["id"],)) == 0
    assert stack.sql("SELECT group_id FROM member_count_history") == [(new["id"],)]


def test_malformed_and_unknown_updates_complete_without_retrying(stack: Stack) -> None:
    stack.start_worker("main")
    bad: list[dict[str, Any]] = [
        {"bot": "main", "update": {"update_id": 1, "message": {"chat": "not an object"}}},
        {"bot": "main", "update": {"update_id": 2, "my_chat_member": {"chat": {"id": -5, "type": "group"}}}},
        {"bot": "tgms", "update": {"update_id": 3, "poll": {"id": "x"}}},
        {
            "bot": "main",
            "update": {
                "update_id": 4,
                "message": {"chat": {"id": -1, "type": "group"}, "date": 1, "from": {"id": 2**70}},
            },
        },
        {"bot": "main"},
        {"bot": "nobody", "update": {"update_id": 5}},
    ]
    ids = [stack.enqueue("process_telegram_update", payload) for payload in bad]
    stack.wait_jobs_idle("process_telegram_update")
    statuses = stack.sql("SELECT job_id, status, retries FROM jobs WHERE job_id = ANY(%s) ORDER BY job_id", (ids,))
    assert [(s, r) for _, s, r in statuses][:5] == [("done", 0)] * 5
    # An unknown bot name is a configuration mistake: failed at once, with a clear error, not retried.
    assert statuses[5][1:] == ("failed", 1)
