"""Scenario 3: Telegram's failures, injected by the simulator, each met by its documented reaction, and
no job retrying for ever.

One broadcast to 31 groups and six join requests run side by side through the real processes:

- 429 storm: the bot is paused for retry_after in every process and the row retried, never a failure;
  a join request's job snoozes without counting a retry.
- 5xx from the Bot API: the row is retried with backoff, then 'failed' (not counted) after 5 attempts;
  a join request's job is retried until its max_retries, then the request is logged 'failed'.
- 502/504 page of a proxy, client timeout: 'ambiguous' (may have been delivered), never resent; a join
  request's job is retried (approving is idempotent).
- bot kicked, chat not found, group deleted: 'failed' and counted, the group deactivated at the
  threshold (3); a join request is logged 'failed' and not retried.
- group upgraded to a supergroup: the id is rewritten everywhere and the message sent to the new id,
  not counted; a join request to the old id is logged 'failed' (the new id has no such request).

The main worker is not started: it would learn of kicks and upgrades from the updates Telegram sends
and deactivate or rewrite the groups before the broadcast meets them, which is the case tested here.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from typing import Any

import pytest

from tests.workers.harness import Stack
from workers.telegram_api import DEFAULT_TIMEOUT

from .oracle import per_chat
from .results import ScenarioFactory
from .world import StackFactory, add_groups, managed_chats, tgms_chats

SEND = "sendMessage"
APPROVE = "approveChatJoinRequest"
STORM = 5  # 429s in a row
STORM_RETRY_AFTER = 2
MARGIN = 0.5  # a send already past the limiter when a 429 landed may still start this long after it
SERVER_ERROR: dict[str, Any] = {"error_code": 500, "description": "Internal Server Error"}
CLIENT_TIMEOUT = float(DEFAULT_TIMEOUT.read or 30.0)
MAX_ATTEMPTS = 5  # workers.group_sender.MAX_ATTEMPTS (temporary errors per row)
JOB_MAX_RETRIES = 2  # lowered on the persistently failing approval's job, so its backoff stays short
ENV = {
    "TGMS_RATE_PER_SECOND": "20",
    "TGMS_GROUP_DELAY_SECONDS": "0",
    "TGMS_GROUP_MESSAGES_PER_MINUTE": "1000",
    "TGMS_LOG_LEVEL": "DEBUG",  # every Telegram call and error is logged: more output for the leak scan
}


def _join_outcome(stack: Stack, chat: int, user: int) -> tuple[str, str | None] | None:
    rows = stack.sql("SELECT status, error FROM join_requests WHERE chat_id = %s AND user_id = %s", (chat, user))
    assert len(rows) <= 1
    return (str(rows[0][0]), rows[0][1]) if rows and rows[0][0] != "processing" else None


@pytest.mark.slow
def test_each_telegram_fault_gets_its_reaction_and_no_job_retries_for_ever(
    db_url: str, make_stack: StackFactory, scenario: ScenarioFactory
) -> None:
    rec = scenario(
        "3", "Telegram faults",
        injected=f"through the simulator, during one broadcast (31 groups) and 6 join requests: a storm of {STORM} "
        f"429s (retry_after {STORM_RETRY_AFTER}); Bot API 500s (twice; for ever); nginx 502 page; 504 after a 1 s "
        f"hang; a {CLIENT_TIMEOUT + 1:g} s hang (client timeout {CLIENT_TIMEOUT:g} s, delivered late); bot kicked; "
        "chat not found; basic group and supergroup deleted; basic group upgraded",
        checked="per group: sent_messages status, Telegram calls made (exact), consecutive_failures and "
        "is_active as documented; no send starts while the bot is paused; per join request: final status, "
        "calls made, job retries; at the end every job done, none pending/running, retries <= max_retries",
    )  # fmt: skip
    stack: Stack = make_stack(db_url, env=ENV)
    ctl = stack.ctl
    # A first run of the worker does this period's member-count and inactivity jobs (they read every
    # group and would meet the faults first); it is then stopped so the join requests below queue up.
    warm_up = stack.start_worker("tgms")
    stack.wait_jobs_idle()
    stack.kill(warm_up, signal.SIGTERM)

    # ---------------------------------------------------------------- join requests, queued first
    req_chats = tgms_chats(stack, 5) + tgms_chats(stack, 1, "group")
    add_groups(stack, req_chats)
    flood_chat, broken_chat, gateway_chat, kicked_chat, gone_chat, basic_chat = (c["id"] for c in req_chats)
    requests = {chat: ctl.join_request(chat)["user_id"] for chat in (c["id"] for c in req_chats)}
    stack.wait_for(lambda: stack.scalar("SELECT count(*) FROM jobs WHERE job_type = 'tgms_process_join_request'")
                   == len(requests), what="join requests stored")  # fmt: skip
    chat_of_job = "(payload #>> '{update,chat_join_request,chat,id}')::bigint"
    stack.sql(f"UPDATE jobs SET max_retries = %s WHERE job_type = 'tgms_process_join_request' AND {chat_of_job} = %s",
              (JOB_MAX_RETRIES, broken_chat))  # fmt: skip
    ctl.add_fault("flood", method=APPROVE, chat_id=flood_chat, retry_after=1, times=1)
    ctl.add_fault("error", method=APPROVE, chat_id=broken_chat, times=None, **SERVER_ERROR)
    ctl.add_fault("hang", method=APPROVE, chat_id=gateway_chat, seconds=1, apply=False, times=1)
    ctl.kick_bot(kicked_chat, stack.tgms_bot_id)
    ctl.delete_chat(gone_chat)
    upgraded_to = int(ctl.upgrade(basic_chat)["id"])
    # Where each request's row ends up: a request meeting the upgrade moves with its group.
    logged_in = {chat: upgraded_to if chat == basic_chat else chat for chat in requests}

    # ---------------------------------------------------------------- broadcast targets
    ok = managed_chats(stack, 20)
    g: dict[str, int] = {}
    prior: dict[int, int] = {}

    def group(name: str, kind: str = "supergroup", failures: int = 0) -> int:
        chat = tgms_chats(stack, 1, kind)[0]
        add_groups(stack, [chat], consecutive_failures=failures)
        g[name], prior[chat["id"]] = chat["id"], failures
        return int(chat["id"])

    ctl.add_fault("error", method=SEND, chat_id=group("5xx twice", failures=1), times=2, **SERVER_ERROR)
    ctl.add_fault("error", method=SEND, chat_id=group("5xx for ever", failures=1), times=None, **SERVER_ERROR)
    ctl.add_fault("status", method=SEND, chat_id=group("502 page"), status=502, times=1)
    ctl.add_fault("hang", method=SEND, chat_id=group("504 after a hang"), seconds=1, apply=False, times=1)
    ctl.add_fault("hang", method=SEND, chat_id=group("client timeout"), seconds=CLIENT_TIMEOUT + 1, apply=True)
    ctl.kick_bot(group("kicked at threshold", failures=2), stack.tgms_bot_id)
    ctl.kick_bot(group("kicked"), stack.tgms_bot_id)
    missing = -1009000000000 - int(time.time() * 1000) % 10**8  # a group Telegram does not know
    add_groups(stack, [{"id": missing, "title": "Gone missing", "type": "supergroup"}], consecutive_failures=2)
    g["not found"], prior[missing] = missing, 2
    ctl.delete_chat(group("deleted basic group", "group"))
    ctl.delete_chat(group("deleted supergroup", failures=2))
    old = group("upgraded", "group", failures=1)
    new = int(ctl.upgrade(old)["id"])
    ctl.add_fault("flood", method=SEND, retry_after=STORM_RETRY_AFTER, times=STORM)  # after the per-chat ones

    # ---------------------------------------------------------------- go
    started = time.monotonic()
    stack.start_worker("tgms")
    targets = [*ok, *g.values()]  # not the join-request groups: their outcome there is the point
    broadcast_id = stack.broadcast(
        {"text": "Fault *drill*", "parse_mode": "Markdown", "target": {"group_ids": targets}}
    )
    finished = "SELECT status FROM broadcasts WHERE broadcast_id = %s AND status NOT IN ('pending', 'running')"
    assert stack.wait_for(lambda: stack.scalar(finished, (broadcast_id,)), timeout=120, what="broadcast") == "done"
    stack.wait_for(lambda: all(_join_outcome(stack, logged_in[c], u) for c, u in requests.items()), timeout=60,
                   what="join request outcomes")  # fmt: skip
    # Only the TGMS pool: the main pool's jobs (Telegram's updates about the kicks and upgrades) wait
    # for a main worker, which this scenario does not run.
    busy = "SELECT count(*) FROM jobs WHERE pool = 'tgms' AND status IN ('pending', 'running')"
    stack.wait_for(lambda: stack.scalar(busy) == 0, timeout=60, what="TGMS jobs idle")
    elapsed = time.monotonic() - started
    # The timed-out send is still being answered (late) by Telegram: wait for its record.
    stack.wait_for(lambda: stack.calls(SEND, chat_id=g["client timeout"]), timeout=10, what="the late answer")

    # ---------------------------------------------------------------- the broadcast, group by group
    rows = {int(c): (str(s), e) for c, s, e in stack.sql(
        "SELECT chat_id, status, error FROM sent_messages WHERE broadcast_id = %s", (broadcast_id,))}  # fmt: skip
    groups = {int(gid): (int(f), bool(a), r) for gid, f, a, r in stack.sql(
        "SELECT group_id, consecutive_failures, is_active, deactivated_reason FROM managed_groups")}  # fmt: skip
    sends = stack.calls(SEND)
    storm = [c for c in sends if c["error_code"] == 429]
    assert len(storm) == STORM and all(c["fault_id"] is not None for c in storm)
    calls = per_chat(c for c in sends if c["error_code"] != 429)  # every other call, per group
    delivered = per_chat(sends, ok=True)

    expect: dict[int, tuple[str, int, int, bool]] = {}  # group -> (row status, calls, failures after, active)
    for chat in ok:
        expect[chat] = ("sent", 1, 0, True)
    expect[g["5xx twice"]] = ("sent", 3, 0, True)  # a success resets the earlier failure
    expect[g["5xx for ever"]] = ("failed", MAX_ATTEMPTS, 1, True)  # given up, but not the group's fault
    expect[g["502 page"]] = ("ambiguous", 1, 0, True)
    expect[g["504 after a hang"]] = ("ambiguous", 1, 0, True)
    expect[g["client timeout"]] = ("ambiguous", 1, 0, True)
    expect[g["kicked at threshold"]] = ("failed", 1, 3, False)
    expect[g["kicked"]] = ("failed", 1, 1, True)
    expect[g["not found"]] = ("failed", 1, 3, False)
    expect[g["deleted basic group"]] = ("failed", 1, 1, True)
    expect[g["deleted supergroup"]] = ("failed", 1, 3, False)
    expect[new] = ("sent", 1, 0, True)  # migrated: the row and the group now carry the new id
    actual = {chat: (rows[chat][0], calls[chat], groups[chat][0], groups[chat][1]) for chat in expect}
    assert actual == expect
    assert set(rows) == set(expect)
    assert old not in groups  # the broadcast rewrote the id (the join-request handler leaves that to others)
    assert calls[old] == 1 and not delivered[old]  # refused once, naming the new id
    assert {chat for chat, n in delivered.items() if n > 1} == set()
    assert delivered[g["client timeout"]] == 1  # Telegram did deliver it; TGMS said "maybe" and did not resend
    for name in ("kicked at threshold", "not found", "deleted supergroup"):
        assert "3 consecutive broadcast failures" in str(groups[g[name]][2])

    # A 429 paused the bot for every sender: no send started during a pause (after the margin).
    pauses = [(float(c["at"]) + c["duration_ms"] / 1000 + MARGIN, float(c["at"]) + c["duration_ms"] / 1000
               + STORM_RETRY_AFTER - 0.05) for c in storm]  # fmt: skip
    during = [c for c in sends if any(lo <= float(c["at"]) < hi for lo, hi in pauses)]
    assert during == []

    # ---------------------------------------------------------------- join requests
    approvals = stack.calls(APPROVE)
    by_chat: dict[int, list[Any]] = {}
    for call in approvals:
        by_chat.setdefault(int(call["chat_id"]), []).append(call["error_code"])
    job_rows = stack.sql(f"SELECT {chat_of_job}, status, retries, max_retries FROM jobs "
                         "WHERE job_type = 'tgms_process_join_request'")  # fmt: skip
    jobs = {int(chat): (str(status), int(retries), int(top)) for chat, status, retries, top in job_rows}
    outcomes = {chat: _join_outcome(stack, logged_in[chat], user) for chat, user in requests.items()}
    assert {chat: o[0] if o else None for chat, o in outcomes.items()} == {
        flood_chat: "approved", broken_chat: "failed", gateway_chat: "approved",
        kicked_chat: "failed", gone_chat: "failed", basic_chat: "failed",
    }  # fmt: skip
    assert by_chat == {
        flood_chat: [429, None],  # snoozed for retry_after, then approved
        broken_chat: [500] * (JOB_MAX_RETRIES + 1),  # tried max_retries + 1 times, then given up
        gateway_chat: [504, None],  # retried by the runner
        kicked_chat: [403], gone_chat: [400], basic_chat: [400],  # permanent: not retried
    }  # fmt: skip
    assert jobs == {
        flood_chat: ("done", 0, 5), broken_chat: ("done", JOB_MAX_RETRIES, JOB_MAX_RETRIES),
        gateway_chat: ("done", 1, 5), kicked_chat: ("done", 0, 5), gone_chat: ("done", 0, 5),
        basic_chat: ("done", 0, 5),
    }  # fmt: skip
    assert f"upgraded to supergroup {upgraded_to}" in str(outcomes[basic_chat])
    assert basic_chat not in groups and upgraded_to in groups  # the id was rewritten by the join request

    # ---------------------------------------------------------------- nothing retries for ever
    states = stack.sql("SELECT status, count(*), bool_and(retries <= max_retries) FROM jobs WHERE pool = 'tgms' "
                       "GROUP BY status")  # fmt: skip
    assert [(s, within) for s, _, within in states] == [("done", True)], states

    statuses = Counter(s for s, _ in rows.values())
    rec.measure("groups", len(rows))
    rec.measure("sent/failed/ambiguous", f"{statuses['sent']}/{statuses['failed']}/{statuses['ambiguous']}")
    rec.measure("429s", len(storm))
    rec.measure("deactivated", sum(1 for c in expect if not groups[c][1]))
    rec.measure("join requests approved/failed", f"{sum(1 for o in outcomes.values() if o and o[0] == 'approved')}/"
                f"{sum(1 for o in outcomes.values() if o and o[0] == 'failed')}")  # fmt: skip
    rec.measure("all settled after (s)", round(elapsed, 1))
