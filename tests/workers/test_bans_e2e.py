"""The fleet's ban list end to end: admin API / command line → tgms_fleet_ban → banChatMember in every
managed group of both bots (simulator), a banned user's join requests declined, unban everywhere,
a worker killed mid-ban, `--until`."""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any

import httpx
import pytest

from .harness import ADMIN_KEY, REPO, Stack

BAN = "banChatMember"
UNBAN = "unbanChatMember"


def api(stack: Stack, method: str, path: str, **kw: Any) -> httpx.Response:
    assert stack.webhook_url is not None
    return httpx.request(method, f"{stack.webhook_url}{path}", headers={"x-api-key": ADMIN_KEY}, timeout=10, **kw)


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tgms_tui.commands.cli", *args], cwd=REPO, env=stack.env(),
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def outcomes(stack: Stack, ban_id: int, action: str) -> dict[int, tuple[str, str | None, str | None]]:
    rows = stack.sql("SELECT group_id, status, bot, error FROM fleet_ban_groups WHERE ban_id = %s AND action = %s",
                     (ban_id, action))  # fmt: skip
    return {int(g): (s, b, e) for g, s, b, e in rows}


def settled(stack: Stack, ban_id: int, action: str) -> bool:
    rows = outcomes(stack, ban_id, action)
    return bool(rows) and all(s not in ("pending", "applying") for s, _, _ in rows.values())


def banned_in(stack: Stack, chat_id: int) -> set[int]:
    return {int(b["user_id"]) for b in stack.ctl.bans(chat_id)}


def test_ban_across_both_bots_groups_declines_requests_and_unban_lifts_everywhere(stack: Stack) -> None:
    ctl = stack.ctl
    stack.start_worker("tgms")
    stack.start_worker("main")
    tgms, main = stack.tgms_bot_id, stack.main_bot_id
    villain = ctl.create_user("Spam", username="spammer")["id"]
    both = [ctl.create_chat("supergroup", f"Both {i}", members=[villain]) for i in range(3)]
    tgms_only = ctl.create_chat("supergroup", "TGMS only", bots=[tgms])
    # The TGMS bot is a plain member here; the main bot is the administrator that can ban.
    main_admin = ctl.create_chat("supergroup", "Main bot admin", bots={tgms: {"status": "member"}, main: {}})
    # Neither bot may ban here: the group reports failed with Telegram's reason.
    no_rights = ctl.create_chat("supergroup", "No rights", bots={tgms: {"status": "member"}})
    basic = ctl.create_chat("group", "Basic", members=[villain], bots=[tgms])
    inactive = ctl.create_chat("supergroup", "Inactive", bots=[tgms])
    for chat in [*both, tgms_only, main_admin, no_rights, basic]:
        stack.add_group(chat)
    stack.add_group(inactive, is_active=False, deactivated_reason="deactivated by an operator")

    # Waiting for an operator in a group (the manual queue's 'pending'): declined at once on a ban.
    # Seeded: the request reaches TGMS before the group is managed (Telegram keeps it pending), then
    # its row is made a waiting one.
    waiting = ctl.create_chat("supergroup", "Manual", bots=[tgms])
    ctl.join_request(waiting["id"], villain)
    stack.wait_for(lambda: stack.scalar("SELECT status FROM join_requests WHERE user_id = %s", (villain,))
                   == "skipped_unmanaged", what="request logged")  # fmt: skip
    stack.add_group(waiting)
    stack.sql("UPDATE join_requests SET status = 'pending', processed_at = NULL WHERE user_id = %s", (villain,))

    response = api(stack, "POST", "/api/tgms/bans", json={"user_id": villain, "reason": "spam links"})
    assert response.status_code == 201, response.text
    ban_id = int(response.json()["ban_id"])
    assert response.json()["groups"] == 8  # every active managed group
    stack.wait_for(lambda: settled(stack, ban_id, "ban"), what="ban applied everywhere")
    rows = outcomes(stack, ban_id, "ban")
    for chat in [*both, tgms_only, basic, waiting]:
        assert rows[chat["id"]][:2] == ("done", "tgms"), (chat["title"], rows[chat["id"]])
    assert rows[main_admin["id"]][:2] == ("done", "main")
    status, bot, error = rows[no_rights["id"]]
    assert status == "failed" and bot is None
    assert error is not None and "not enough rights to restrict/unrestrict chat member" in error
    assert rows[inactive["id"]] == ("skipped", None, "group is inactive")
    for chat in [*both, tgms_only, main_admin, waiting]:
        assert villain in banned_in(stack, chat["id"])
    # A basic group has no ban list: the ban removed the member.
    assert all(m["user"]["id"] != villain or m["status"] == "left" for m in ctl.chat(basic["id"])["members"])
    assert stack.calls(BAN, chat_id=inactive["id"]) == []
    # The waiting request was declined, once, and its row says why.
    assert stack.scalar("SELECT status FROM join_requests WHERE user_id = %s AND chat_id = %s "
                        "ORDER BY requested_at DESC LIMIT 1", (villain, waiting["id"])) == "banned"  # fmt: skip
    assert len(stack.calls("declineChatJoinRequest", chat_id=waiting["id"])) == 1
    who, why = stack.sql("SELECT banned_by, reason FROM fleet_bans WHERE ban_id = %s", (ban_id,))[0]
    assert who.startswith("api:") and why == "spam links"

    # A new group joins the fleet after the ban: the banned user's request there is declined at once.
    later = ctl.create_chat("supergroup", "Later", bots=[tgms])
    stack.add_group(later)
    ctl.join_request(later["id"], villain)
    stack.wait_for(lambda: stack.scalar("SELECT status FROM join_requests WHERE chat_id = %s", (later["id"],))
                   == "banned", what="banned requester declined")  # fmt: skip
    assert stack.calls("approveChatJoinRequest", chat_id=later["id"]) == []
    assert len(stack.calls("declineChatJoinRequest", chat_id=later["id"])) == 1
    # Listed by the command line and the API.
    listed = cli(stack, "bans", "list", "--json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert f'"user_id": {villain}' in listed.stdout and '"state": "banned"' in listed.stdout
    assert [b["user_id"] for b in api(stack, "GET", "/api/tgms/bans").json()["bans"]] == [villain]
    # A second ban of the same user is refused.
    assert api(stack, "POST", "/api/tgms/bans", json={"user_id": villain, "reason": "again"}).status_code == 409

    # Unban: lifted in every supergroup where it was applied (only_if_banned), not in the basic group.
    assert api(stack, "DELETE", f"/api/tgms/bans/{villain}").status_code == 200
    stack.wait_for(lambda: settled(stack, ban_id, "unban"), what="unban applied everywhere")
    lifted = outcomes(stack, ban_id, "unban")
    assert {g for g, (s, _, _) in lifted.items() if s == "done"} == {
        c["id"] for c in [*both, tgms_only, main_admin, waiting]
    }
    assert lifted[basic["id"]][0] == "skipped"
    assert no_rights["id"] not in lifted and inactive["id"] not in lifted
    for chat in [*both, tgms_only, main_admin, waiting]:
        assert villain not in banned_in(stack, chat["id"])
    for call in stack.calls(UNBAN):
        assert call["params"].get("only_if_banned") in (True, "true", "True")
    # Not banned any more: a new request is approved.
    ctl.join_request(both[0]["id"], villain)
    stack.wait_for(lambda: stack.scalar("SELECT status FROM join_requests WHERE chat_id = %s AND user_id = %s",
                                        (both[0]["id"], villain)) == "approved")  # fmt: skip


def test_until_maps_to_until_date_and_the_entry_expires(stack: Stack) -> None:
    ctl = stack.ctl
    stack.start_worker("tgms")
    chat = stack.add_group(ctl.create_chat("supergroup", "G", bots=[stack.tgms_bot_id]))
    user = ctl.create_user("Temp")["id"]
    done = cli(stack, "ban", str(user), "--reason", "cool down", "--until", "7d", "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 done" in done.stdout
    until = stack.scalar("SELECT floor(extract(epoch FROM until))::bigint FROM fleet_bans WHERE user_id = %s", (user,))
    calls = stack.calls(BAN, chat_id=chat)
    assert len(calls) == 1 and int(calls[0]["params"]["until_date"]) == until
    assert stack.ctl.bans(chat) == [{"user_id": user, "until_date": until}]
    # Bad input is one clear line.
    bad = cli(stack, "ban", str(user), "--reason", "x", "--until", "tomorrow")
    assert bad.returncode == 2 and "neither a duration" in bad.stdout
    # The ban's end arrives (here: moved to the past), so the ban list no longer holds the user: Telegram
    # has lifted its own ban by then, and a new request is approved.
    stack.sql("UPDATE fleet_bans SET until = now() - interval '1 second' WHERE user_id = %s", (user,))
    stack.sim.state.chats[chat].members.pop(user, None)  # Telegram's until_date passed too
    ctl.join_request(chat, user)
    stack.wait_for(lambda: stack.scalar("SELECT status FROM join_requests WHERE user_id = %s", (user,))
                   == "approved")  # fmt: skip
    listed = cli(stack, "bans", "list")
    assert "expired" in listed.stdout and "0 in force" in listed.stdout
    # An expired entry does not block a new ban.
    assert cli(stack, "ban", str(user), "--reason", "again").returncode == 0


def test_a_ban_declines_the_users_ambiguous_requests_too_once_each(stack: Stack) -> None:
    """Ambiguous requests (a decision whose outcome is unknown) of a banned user are declined with the
    waiting ones: one still waiting in Telegram is declined; one Telegram already handled (the lost
    decision did reach it) gets HIDE_REQUESTER_MISSING and is recorded banned with Telegram's word."""
    ctl = stack.ctl
    stack.start_worker("tgms")
    villain = ctl.create_user("Ambiguous")["id"]
    still, handled = (ctl.create_chat("supergroup", f"Ambiguous {i}", bots=[stack.tgms_bot_id]) for i in range(2))
    # Seeded as in the manual queue: logged before the groups are managed, then made ambiguous.
    for chat in (still, handled):
        ctl.join_request(chat["id"], villain)
    stack.wait_for(lambda: stack.scalar("SELECT count(*) FROM join_requests WHERE user_id = %s", (villain,)) == 2,
                   what="requests logged")  # fmt: skip
    for chat in (still, handled):
        stack.add_group(chat)
    stack.sql("UPDATE join_requests SET status = 'ambiguous', error = 'timed out (may have reached Telegram)' "
              "WHERE user_id = %s", (villain,))  # fmt: skip
    # The lost decision of the second one did reach Telegram: it no longer has the request.
    with stack.sim.state.lock:
        assert stack.sim.state.chats[handled["id"]].join_requests.pop(villain, None) is not None

    banned = cli(stack, "ban", str(villain), "--reason", "spam", "--wait")
    assert banned.returncode == 0, banned.stdout + banned.stderr
    rows = {int(c): (s, e) for c, s, e in stack.sql(
        "SELECT chat_id, status, error FROM join_requests WHERE user_id = %s", (villain,))}  # fmt: skip
    assert rows[still["id"]] == ("banned", "declined: the user was banned from the fleet")
    status, error = rows[handled["id"]]
    assert status == "banned" and error is not None and "HIDE_REQUESTER_MISSING" in error
    assert not [r for r in ctl.join_requests(still["id"]) if int(r["user"]["id"]) == villain]
    # One decline call per request by the ban; Telegram refused the handled one.
    assert len(stack.calls("declineChatJoinRequest", chat_id=still["id"], ok=True)) == 1
    refused = stack.calls("declineChatJoinRequest", chat_id=handled["id"])
    assert len(refused) == 1 and "HIDE_REQUESTER_MISSING" in str(refused[0].get("description"))
    for chat in (still, handled):
        assert villain in banned_in(stack, chat["id"])
    assert stack.scalar("SELECT count(*) FROM join_requests WHERE processed_at IS NULL") == 0


@pytest.mark.slow
def test_a_worker_killed_mid_ban_resumes_and_every_group_ends_banned(stack: Stack) -> None:
    ctl = stack.ctl
    env = {"TGMS_RATE_PER_SECOND": "8", "TGMS_JOB_LEASE_SECONDS": "3"}
    first = stack.start_worker("tgms", **env)
    groups = [stack.add_group(ctl.create_chat("supergroup", bots=[stack.tgms_bot_id])) for _ in range(40)]
    user = ctl.create_user("Raider")["id"]
    ban_id = int(api(stack, "POST", "/api/tgms/bans", json={"user_id": user, "reason": "raid"}).json()["ban_id"])
    stack.wait_for(lambda: sum(s == "done" for s, _, _ in outcomes(stack, ban_id, "ban").values()) >= 8,
                   what="first bans")  # fmt: skip
    stack.kill(first, signal.SIGKILL)
    done_before = sum(s == "done" for s, _, _ in outcomes(stack, ban_id, "ban").values())
    assert done_before < len(groups)
    stack.start_worker("tgms", **env)
    stack.wait_for(lambda: settled(stack, ban_id, "ban"), timeout=60, what="ban resumed")
    rows = outcomes(stack, ban_id, "ban")
    assert all(s == "done" for s, _, _ in rows.values()), rows
    for group in groups:
        assert banned_in(stack, group) == {user}
        # At most one repeat (the call in flight when the worker died); never harmful: it is idempotent.
        assert 1 <= len(stack.calls(BAN, chat_id=group)) <= 2
    assert sum(len(stack.calls(BAN, chat_id=g)) for g in groups) <= len(groups) + 4
