"""Inactive-member kicks end to end: dry run, real run (ban+unban / ban), protections and the audit."""

from __future__ import annotations

from typing import Any

from .harness import Stack

OWNER, ADMIN, OTHER_BOT, IDLE1, IDLE2, ACTIVE, GONE, IDLE_BASIC, IDLE_OPTED_OUT = (
    8001,
    8002,
    8003,
    8004,
    8005,
    8006,
    8007,
    8008,
    8009,
)


def _seen(stack: Stack, chat_id: int, user_id: int, days_ago: float, *, is_bot: bool = False) -> None:
    stack.sql("INSERT INTO member_activity (chat_id, user_id, status, is_bot, first_seen_at, last_seen_at) "
              "VALUES (%s, %s, 'member', %s, now() - make_interval(days => 90), "
              "now() - make_interval(secs => %s))", (chat_id, user_id, is_bot, days_ago * 86400))  # fmt: skip


def _audit(stack: Stack, dry_run: bool) -> set[tuple[int, int, str]]:
    rows = stack.sql("SELECT chat_id, user_id, action FROM kick_audit WHERE dry_run = %s", (dry_run,))
    return {(int(c), int(u), str(a)) for c, u, a in rows}


def _status(stack: Stack, chat_id: int, user_id: int) -> Any:
    return next((m["status"] for m in stack.ctl.chat(chat_id)["members"] if m["user"]["id"] == user_id), "left")


def test_dry_run_reports_then_real_run_kicks_only_the_inactive(stack: Stack) -> None:
    ctl = stack.ctl
    stack.start_worker("tgms")
    stack.wait_jobs_idle()  # the periodic run at start-up finds no opted-in group yet
    tgms = stack.tgms_bot_id
    sup = ctl.create_chat(
        "supergroup",
        "Super",
        owner=OWNER,
        admins=[ADMIN],
        bots=[tgms],
        members=[{"id": OTHER_BOT, "is_bot": True}, IDLE1, IDLE2, ACTIVE, GONE],
    )
    basic = ctl.create_chat("group", "Basic", owner={"id": 8101}, bots=[tgms], members=[IDLE_BASIC])
    opted_out = ctl.create_chat("supergroup", "No policy", owner={"id": 8201}, bots=[tgms], members=[IDLE_OPTED_OUT])
    stack.add_group(sup, inactivity_days=7)
    stack.add_group(basic, inactivity_days=7)
    stack.add_group(opted_out)
    ctl.remove_member(sup["id"], GONE)  # left while TGMS was not looking
    for user in (OWNER, ADMIN, IDLE1, IDLE2, GONE):
        _seen(stack, sup["id"], user, days_ago=30)
    _seen(stack, sup["id"], OTHER_BOT, days_ago=30, is_bot=True)
    _seen(stack, sup["id"], tgms, days_ago=30, is_bot=True)
    _seen(stack, sup["id"], ACTIVE, days_ago=2)
    _seen(stack, basic["id"], IDLE_BASIC, days_ago=8)
    _seen(stack, opted_out["id"], IDLE_OPTED_OUT, days_ago=300)

    stack.enqueue("tgms_kick_inactive_members", {"dry_run": True})
    stack.wait_jobs_idle("tgms_kick_inactive_members")
    expected_skips = {
        (sup["id"], OWNER, "skipped_owner"),
        (sup["id"], ADMIN, "skipped_admin"),
        (sup["id"], OTHER_BOT, "skipped_bot"),
        (sup["id"], tgms, "skipped_bot"),
        (sup["id"], GONE, "skipped_not_member"),
    }
    assert _audit(stack, dry_run=True) == expected_skips | {
        (sup["id"], IDLE1, "would_kick"),
        (sup["id"], IDLE2, "would_kick"),
        (basic["id"], IDLE_BASIC, "would_kick"),
    }
    assert stack.calls("banChatMember") == [] and stack.calls("unbanChatMember") == []
    assert _status(stack, sup["id"], IDLE1) == "member"

    stack.enqueue("tgms_kick_inactive_members", {})
    stack.wait_jobs_idle("tgms_kick_inactive_members")
    assert _audit(stack, dry_run=False) == expected_skips | {
        (sup["id"], IDLE1, "kicked"),
        (sup["id"], IDLE2, "kicked"),
        (basic["id"], IDLE_BASIC, "kicked"),
    }
    bans = sorted((c["chat_id"], int(c["params"]["user_id"])) for c in stack.calls("banChatMember", ok=True))
    assert bans == sorted([(sup["id"], IDLE1), (sup["id"], IDLE2), (basic["id"], IDLE_BASIC)])
    # Supergroup: unbanned right after (removed, free to come back); basic groups have no unban.
    unbans = sorted((c["chat_id"], int(c["params"]["user_id"])) for c in stack.calls("unbanChatMember", ok=True))
    assert unbans == sorted([(sup["id"], IDLE1), (sup["id"], IDLE2)])
    assert _status(stack, sup["id"], IDLE1) == "left" and _status(stack, sup["id"], ACTIVE) == "member"
    assert _status(stack, opted_out["id"], IDLE_OPTED_OUT) == "member"
    assert stack.scalar("SELECT status FROM member_activity WHERE chat_id = %s AND user_id = %s",
                        (sup["id"], IDLE1)) == "kicked"  # fmt: skip

    # Again: nobody is kicked twice.
    stack.enqueue("tgms_kick_inactive_members", {})
    stack.wait_jobs_idle("tgms_kick_inactive_members")
    assert len(stack.calls("banChatMember")) == 3
