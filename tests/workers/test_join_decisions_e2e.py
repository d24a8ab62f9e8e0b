"""An operator's bulk decisions end to end (simulator → webhook → TGMS worker → simulator): batches at
the bot's rate, each request decided once, 429s waited out, and a worker killed with calls in flight."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import httpx

from .harness import ADMIN_KEY, REPO, Stack

APPROVE, DECLINE = "approveChatJoinRequest", "declineChatJoinRequest"


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tgms_tui.commands.cli", *args], cwd=REPO, env=stack.env(),
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def _api(stack: Stack, method: str, path: str, body: Any = None) -> httpx.Response:
    assert stack.webhook_url is not None
    return httpx.request(method, f"{stack.webhook_url}{path}", json=body, headers={"x-api-key": ADMIN_KEY},
                         timeout=10)  # fmt: skip


def _queue(stack: Stack, chat_id: int, n: int) -> list[int]:
    """`n` requests waiting in a manual group's queue; their user ids."""
    users = [stack.ctl.join_request(chat_id)["user_id"] for _ in range(n)]
    stack.wait_for(
        lambda: stack.scalar("SELECT count(*) FROM join_requests WHERE chat_id = %s AND status = 'pending'",
                             (chat_id,)) == n,
        what=f"{n} requests queued",
    )  # fmt: skip
    return users


def _statuses(stack: Stack, chat_id: int) -> dict[int, str]:
    return dict(stack.sql("SELECT user_id, status FROM join_requests WHERE chat_id = %s", (chat_id,)))


def _ok_calls(stack: Stack, method: str, chat_id: int) -> dict[int, int]:
    """Calls Telegram carried out, per user."""
    out: dict[int, int] = {}
    for call in stack.calls(method, chat_id=chat_id, ok=True):
        user = int(call["params"]["user_id"])
        out[user] = out.get(user, 0) + 1
    return out


def _decisions_idle(stack: Stack) -> None:
    stack.wait_jobs_idle("tgms_decide_join_requests", timeout=60)


def test_a_bulk_decline_decides_each_request_once_at_the_bots_rate_through_429s(stack: Stack) -> None:
    ctl = stack.ctl
    stack.start_worker("tgms", TGMS_RATE_PER_SECOND="40")
    stack.start_worker("tgms", TGMS_RATE_PER_SECOND="40")
    chats = [ctl.create_chat("supergroup", f"Bulk {i}", bots=[stack.tgms_bot_id])["id"] for i in range(3)]
    users = {}
    for chat in chats:
        stack.add_group({"id": chat, "type": "supergroup"}, join_policy="manual")
        users[chat] = _queue(stack, chat, 30)
    # Telegram floods twice: those calls did nothing and are made again after the pause.
    ctl.add_fault("flood", method=DECLINE, times=2, retry_after=1)
    for chat in chats[:2]:
        done = _cli(stack, "join-requests", "decline", "--group", str(chat))
        assert done.returncode == 0, done.stdout + done.stderr
    # The third group's requests in one job whose ids span the groups' order.
    ids = [r[0] for r in stack.sql("SELECT request_id FROM join_requests WHERE chat_id = %s", (chats[2],))]
    done = _cli(stack, "join-requests", "decline", *map(str, ids))
    assert done.returncode == 0, done.stdout + done.stderr
    stack.wait_for(
        lambda: stack.scalar("SELECT count(*) FROM join_requests WHERE status = 'declined'") == 90,
        timeout=60, what="90 declined",
    )  # fmt: skip
    _decisions_idle(stack)
    for chat in chats:
        assert set(_statuses(stack, chat).values()) == {"declined"}
        assert _ok_calls(stack, DECLINE, chat) == {u: 1 for u in users[chat]}
        assert _ok_calls(stack, APPROVE, chat) == {}
    floods = [c for c in stack.calls(DECLINE) if c.get("error_code") == 429]
    assert len(floods) == 2
    # Paced by the shared bucket (40/s, burst 4): 90 calls cannot fit in less than (90 - 4) / 40 s,
    # plus the 1 s pause after the 429. (A lower bound only.)
    times = sorted(c["at"] for c in stack.calls(DECLINE, ok=True))
    assert times[-1] - times[0] >= (90 - 4) / 40 * 0.9
    rows = stack.sql("SELECT DISTINCT decided_by, note FROM join_requests")
    assert rows == [("cli", "declined by cli")]


def _kill_with_calls_in_flight(stack: Stack, decision: str) -> tuple[int, list[int], set[int]]:
    """Queue 20 requests, start deciding them all at 10/s with Telegram holding the first calls
    for 2 s (then carrying them out), kill the worker while they hang. Returns (chat, users, the
    request ids left 'processing')."""
    ctl = stack.ctl
    method = APPROVE if decision == "approve" else DECLINE
    worker = stack.start_worker("tgms", TGMS_RATE_PER_SECOND="10", TGMS_JOB_LEASE_SECONDS="3")
    chat = ctl.create_chat("supergroup", "Crash", bots=[stack.tgms_bot_id])["id"]
    stack.add_group({"id": chat, "type": "supergroup"}, join_policy="manual")
    users = _queue(stack, chat, 20)
    hang = ctl.add_fault("hang", method=method, times=2, seconds=2.0, apply=True)
    done = _cli(stack, "join-requests", decision, "--group", str(chat))
    assert done.returncode == 0, done.stdout + done.stderr
    stack.wait_for(lambda: not any(f["id"] == hang["id"] for f in ctl.faults()), what="both hung calls made")
    hung_since = time.monotonic()
    stack.wait_for(lambda: len(_ok_calls(stack, method, chat)) >= 4, what="some calls answered")
    stack.kill(worker)
    left = {r[0] for r in stack.sql("SELECT request_id FROM join_requests WHERE status = 'processing'")}
    assert len(left) >= 2  # at least the two hanging calls
    # Telegram carries the hung calls out after all (2 s after they arrived, the client gone or not).
    time.sleep(max(0.0, hung_since + 2.5 - time.monotonic()))
    return chat, users, left


def test_a_worker_killed_mid_decline_leaves_ambiguous_rows_that_are_never_called_again(stack: Stack) -> None:
    chat, users, left = _kill_with_calls_in_flight(stack, "decline")
    stack.start_worker("tgms", TGMS_RATE_PER_SECOND="10", TGMS_JOB_LEASE_SECONDS="3")
    stack.wait_for(lambda: stack.scalar("SELECT count(*) FROM join_requests WHERE status IN ('pending', "
                                        "'processing')") == 0, timeout=60, what="the job's re-run done")  # fmt: skip
    _decisions_idle(stack)
    rows = {r[0]: (r[1], r[2]) for r in stack.sql("SELECT request_id, status, error FROM join_requests")}
    ambiguous = {i for i, (status, _e) in rows.items() if status == "ambiguous"}
    assert ambiguous == left
    assert all("not repeated" in (rows[i][1] or "") for i in ambiguous)
    assert {s for i, (s, _e) in rows.items() if i not in left} == {"declined"}
    assert all(n == 1 for n in _ok_calls(stack, DECLINE, chat).values())
    # Ambiguous requests wait in the queue: decided again, Telegram says whether it still had them.
    listed = _cli(stack, "join-requests", "list", "--status", "ambiguous", "--json")
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == len(left)
    again = _cli(stack, "join-requests", "decline", *map(str, sorted(left)))
    assert again.returncode == 0, again.stdout + again.stderr
    stack.wait_for(lambda: stack.scalar("SELECT count(*) FROM join_requests WHERE status IN ('ambiguous', "
                                        "'processing')") == 0, what="ambiguous ones decided")  # fmt: skip
    _decisions_idle(stack)
    final = dict(stack.sql("SELECT user_id, status FROM join_requests WHERE chat_id = %s", (chat,)))
    assert set(final.values()) <= {"declined", "expired"}
    assert _ok_calls(stack, DECLINE, chat) == {u: 1 for u in users}
    with stack.sim.state.lock:
        assert not stack.sim.state.chats[chat].join_requests  # nothing left waiting in Telegram


def test_a_worker_killed_mid_approve_records_the_approvals_telegram_carried_out(stack: Stack) -> None:
    chat, users, left = _kill_with_calls_in_flight(stack, "approve")
    stack.start_worker("tgms", TGMS_RATE_PER_SECOND="10", TGMS_JOB_LEASE_SECONDS="3")
    stack.wait_for(lambda: stack.scalar("SELECT count(*) FROM join_requests WHERE status IN ('pending', "
                                        "'processing')") == 0, timeout=60, what="the job's re-run done")  # fmt: skip
    _decisions_idle(stack)
    rows: dict[int, tuple[str, Any]] = {r[0]: (r[1], r[2]) for r in stack.sql(
        "SELECT request_id, status, user_id FROM join_requests")}  # fmt: skip
    approved_calls = _ok_calls(stack, APPROVE, chat)
    assert all(n == 1 for n in approved_calls.values())
    for request_id, (status, user) in rows.items():
        if request_id in left:
            # Carried out by Telegram (the user is a member): approved; never reached it: ambiguous.
            assert status == ("approved" if user in approved_calls else "ambiguous"), (request_id, status)
        else:
            assert status == "approved"
    assert sum(1 for s, _u in rows.values() if s == "approved") == len(approved_calls)
    assert sum(1 for s, _u in rows.values() if s in ("approved", "ambiguous")) == len(users)


def test_decisions_by_invite_link_from_the_cli_and_the_api(stack: Stack) -> None:
    ctl = stack.ctl
    stack.start_worker("tgms")
    chats = [ctl.create_chat("supergroup", f"Linked {i}", bots=[stack.tgms_bot_id])["id"] for i in range(2)]
    for chat in chats:
        stack.add_group({"id": chat, "type": "supergroup"}, join_policy="manual")
    groups = ",".join(map(str, chats))
    for name, where in (("ads-june", f"--groups={groups}"), ("partner", f"--groups={chats[0]}")):
        made = _cli(stack, "links", "create", "--name", name, where)
        assert made.returncode == 0, made.stdout + made.stderr
    stack.wait_for(lambda: stack.scalar("SELECT count(*) FROM invite_links WHERE status = 'active'") == 3,
                   what="links created")  # fmt: skip
    rows = stack.sql("SELECT link_id, name, group_id, invite_link FROM invite_links")
    links = {(n, g): (i, u) for i, n, g, u in rows}
    ads = [ctl.join_request(chats[0], None, invite_link=links["ads-june", chats[0]][1])["user_id"] for _ in range(3)]
    ads += [ctl.join_request(chats[1], None, invite_link=links["ads-june", chats[1]][1])["user_id"] for _ in range(2)]
    partner = [ctl.join_request(chats[0], None, invite_link=links["partner", chats[0]][1])["user_id"]
               for _ in range(2)]  # fmt: skip
    plain = ctl.join_request(chats[0])["user_id"]
    stack.wait_for(lambda: stack.scalar("SELECT count(*) FROM join_requests WHERE status = 'pending'") == 8,
                   what="8 requests queued")  # fmt: skip

    # Bad input is refused in one line naming the option / field; nothing is queued.
    bad = _cli(stack, "join-requests", "decline", "--link", "no-such-source")
    assert bad.returncode == 2 and "--link: no invite link is named" in bad.stdout, bad.stdout
    response = _api(stack, "POST", "/api/tgms/join-requests/decline", {"link": "no-such-source"})
    assert response.status_code == 422 and response.json()["detail"].startswith("link:"), response.text
    assert _api(stack, "POST", "/api/tgms/join-requests/decline", {"link": ["x"]}).status_code == 422
    none = _cli(stack, "join-requests", "approve", "--link", "partner", "--group", str(chats[1]))
    assert none.returncode == 1 and "no waiting request matches" in none.stdout
    assert stack.scalar("SELECT count(*) FROM jobs WHERE job_type = 'tgms_decide_join_requests'") == 0

    # By name: the source's links in every group. By id (API): one link.
    declined = _cli(stack, "join-requests", "decline", "--link", "ads-june")
    assert declined.returncode == 0, declined.stdout + declined.stderr
    assert len(json.loads(declined.stdout)["request_ids"]) == 5
    response = _api(stack, "POST", "/api/tgms/join-requests/approve", {"link": links["partner", chats[0]][0]})
    assert response.status_code == 202 and len(response.json()["request_ids"]) == 2, response.text
    stack.wait_for(lambda: stack.scalar("SELECT count(*) FROM join_requests WHERE status = 'pending'") == 1,
                   what="linked requests decided")  # fmt: skip
    _decisions_idle(stack)
    statuses = {**_statuses(stack, chats[0]), **_statuses(stack, chats[1])}
    assert {u: statuses[u] for u in ads} == {u: "declined" for u in ads}
    assert {u: statuses[u] for u in partner} == {u: "approved" for u in partner}
    assert statuses[plain] == "pending"
    declines = {**_ok_calls(stack, DECLINE, chats[0]), **_ok_calls(stack, DECLINE, chats[1])}
    assert declines == {u: 1 for u in ads}
    assert _ok_calls(stack, APPROVE, chats[0]) == {u: 1 for u in partner}
    by = dict(stack.sql("SELECT user_id, decided_by FROM join_requests WHERE status IN ('approved', 'declined')"))
    assert {by[u] for u in ads} == {"cli"} and {by[u] for u in partner} == {"api:127.0.0.1"}


def test_rows_of_a_decision_job_that_failed_for_good_are_swept_to_ambiguous_and_decidable(stack: Stack) -> None:
    """A decision job on its last attempt whose worker dies mid-call fails for good: no run of it will
    resolve its rows. The sweep (run by any TGMS worker) makes them ambiguous without calling
    Telegram again; an operator's new decision settles them on Telegram's answer."""
    ctl = stack.ctl
    worker = stack.start_worker("tgms", TGMS_RATE_PER_SECOND="10", TGMS_JOB_LEASE_SECONDS="3")
    chat = ctl.create_chat("supergroup", "Abandoned", bots=[stack.tgms_bot_id])["id"]
    stack.add_group({"id": chat, "type": "supergroup"}, join_policy="manual")
    users = _queue(stack, chat, 12)
    ids = [r[0] for r in stack.sql("SELECT request_id FROM join_requests WHERE chat_id = %s", (chat,))]
    hang = ctl.add_fault("hang", method=DECLINE, times=2, seconds=2.0, apply=True)
    job = stack.enqueue("tgms_decide_join_requests", {"ids": ids, "decision": "decline", "by": "cli"},
                        max_retries=0)  # fmt: skip
    stack.wait_for(lambda: not any(f["id"] == hang["id"] for f in ctl.faults()), what="both hung calls made")
    hung_since = time.monotonic()
    stack.kill(worker)
    left = {r[0] for r in stack.sql("SELECT request_id FROM join_requests WHERE status = 'processing'")}
    assert len(left) >= 2
    time.sleep(max(0.0, hung_since + 2.5 - time.monotonic()))  # Telegram carries the hung calls out
    calls_before = _ok_calls(stack, DECLINE, chat)
    # Another worker reaps the dead lease: no retries left, the job fails for good; then the sweep.
    stack.start_worker("tgms", TGMS_RATE_PER_SECOND="10", TGMS_JOB_LEASE_SECONDS="3")
    stack.wait_for(lambda: stack.scalar("SELECT status FROM jobs WHERE job_id = %s", (job,)) == "failed",
                   what="the job failed for good")  # fmt: skip
    stack.wait_for(lambda: stack.scalar("SELECT count(*) FROM join_requests WHERE status = 'processing'") == 0,
                   timeout=30, what="the sweep")  # fmt: skip
    rows = {r[0]: (r[1], r[2]) for r in stack.sql("SELECT request_id, status, error FROM join_requests")}
    assert {i for i, (s, _e) in rows.items() if s == "ambiguous"} == left
    assert all(f"decision job {job} ended (failed)" in (rows[i][1] or "") for i in left)
    assert _ok_calls(stack, DECLINE, chat) == calls_before  # the sweep called nothing
    # Visible in the queue, and decidable: the new decision settles on Telegram's answer.
    listed = _cli(stack, "join-requests", "list", "--status", "ambiguous", "--json")
    assert listed.returncode == 0 and {r["request_id"] for r in json.loads(listed.stdout)} == left
    again = _cli(stack, "join-requests", "decline", *map(str, sorted(left)))
    assert again.returncode == 0, again.stdout + again.stderr
    stack.wait_for(lambda: stack.scalar("SELECT count(*) FROM join_requests WHERE status IN ('ambiguous', "
                                        "'processing')") == 0, what="ambiguous ones decided")  # fmt: skip
    _decisions_idle(stack)
    final = dict(stack.sql("SELECT request_id, status FROM join_requests WHERE chat_id = %s", (chat,)))
    assert {final[i] for i in left} <= {"declined", "expired"}
    assert all(n == 1 for n in _ok_calls(stack, DECLINE, chat).values())
    # What the dead job never reached is still waiting (pending), untouched by the sweep.
    assert {s for i, s in final.items() if i not in left} <= {"declined", "pending"}
    assert len(users) == 12


def test_single_requests_whose_job_ended_for_good_are_swept_without_another_call(stack: Stack) -> None:
    """A request's own job (`tgms_process_join_request`) that fails for good (its worker killed on the
    last attempt) or is cancelled leaves its row 'processing' / 'declining'. The same sweep resolves
    it without calling approve/decline again: approved when the user is a member now, else
    ambiguous; each outcome raises join_request.decided once, as the bulk path's do."""
    ctl = stack.ctl
    stack.sql("INSERT INTO hook_subscriptions (url, events, secret, status) "
              "VALUES ('http://127.0.0.1:9/', ARRAY['join_request.decided'], 's', 'paused')")  # fmt: skip
    lease = {"TGMS_JOB_LEASE_SECONDS": "3"}
    worker = stack.start_worker("tgms", **lease)
    joined, lost, banned, cancelled = (
        ctl.create_chat("supergroup", name, bots=[stack.tgms_bot_id])["id"]
        for name in ("Joined", "Lost", "Banned", "Cancelled")
    )
    for chat in (joined, lost, banned, cancelled):
        stack.add_group({"id": chat, "type": "supergroup"})
    jobs = "SELECT job_id FROM jobs WHERE job_type = 'tgms_process_join_request' AND payload::text LIKE %s"

    # Cancelled: Telegram answers 500 to the approval; an operator cancels the job awaiting its retry.
    ctl.add_fault("error", method=APPROVE, chat_id=cancelled, times=None, error_code=500)
    cancelled_user = ctl.join_request(cancelled)["user_id"]
    retry_due = f"SELECT count(*) FROM jobs WHERE status = 'pending' AND retries >= 1 AND job_id = ({jobs})"
    stack.wait_for(lambda: stack.scalar(retry_due, (f"%{cancelled}%",)) == 1, what="the 500 retried later")
    cancelled_job = stack.scalar(jobs, (f"%{cancelled}%",))
    done = _cli(stack, "jobs", "cancel", str(cancelled_job))
    assert done.returncode == 0, done.stdout + done.stderr
    ctl.clear_faults()

    # Failed for good: three calls hang 2 s (Telegram then carries out the first only) on the jobs'
    # last attempt, and their worker is killed.
    villain = ctl.create_user("Villain")["id"]
    stack.sql("INSERT INTO fleet_bans (user_id, reason, banned_by) VALUES (%s, 'spam', 'cli')", (villain,))
    hangs = [ctl.add_fault("hang", method=APPROVE, chat_id=joined, seconds=2.0, apply=True),
             ctl.add_fault("hang", method=APPROVE, chat_id=lost, seconds=2.0, apply=False),
             ctl.add_fault("hang", method=DECLINE, chat_id=banned, seconds=2.0, apply=False)]  # fmt: skip
    users = {chat: ctl.join_request(chat, villain if chat == banned else None)["user_id"]
             for chat in (joined, lost, banned)}  # fmt: skip
    stack.wait_for(lambda: not {f["id"] for f in ctl.faults()} & {h["id"] for h in hangs}, what="the hung calls")
    hung_since = time.monotonic()
    stack.sql("UPDATE jobs SET max_retries = retries WHERE job_type = 'tgms_process_join_request' "
              "AND status = 'running'")  # fmt: skip
    stack.kill(worker)
    left = dict(stack.sql("SELECT chat_id, status FROM join_requests WHERE chat_id <> %s", (cancelled,)))
    assert left == {joined: "processing", lost: "processing", banned: "declining"}
    time.sleep(max(0.0, hung_since + 2.5 - time.monotonic()))  # Telegram answered the hung calls

    def decisions() -> tuple[int, int]:
        """Approve and decline calls Telegram got so far (answered or not)."""
        return len(stack.calls(APPROVE)), len(stack.calls(DECLINE))

    calls_before = decisions()

    stack.start_worker("tgms", **lease)  # reaps the dead lease (the jobs fail for good), then sweeps
    stack.wait_for(lambda: stack.scalar("SELECT count(*) FROM join_requests WHERE status IN ('processing', "
                                        "'declining')") == 0, timeout=30, what="the sweep")  # fmt: skip
    rows = {chat: (status, error) for chat, status, error in stack.sql(
        "SELECT chat_id, status, error FROM join_requests")}  # fmt: skip
    job_of = {chat: stack.scalar(jobs, (f"%{chat}%",)) for chat in (joined, lost, banned)}
    assert stack.scalar("SELECT count(*) FROM jobs WHERE job_id = ANY(%s) AND status = 'failed'",
                        (list(job_of.values()),)) == 3  # fmt: skip
    assert rows[joined] == ("approved", None)
    assert rows[lost][0] == "ambiguous"
    assert f"job {job_of[lost]} handling this request ended (failed) after recording its intent to approve" in (
        rows[lost][1] or ""
    )
    assert rows[banned][0] == "ambiguous" and "decline (the user is on the fleet's ban list)" in (rows[banned][1] or "")
    assert rows[cancelled][0] == "ambiguous" and f"job {cancelled_job} handling this request ended (cancelled)" in (
        rows[cancelled][1] or ""
    )
    assert decisions() == calls_before  # nothing was approved or declined again (getChatMember only reads)
    assert stack.scalar("SELECT count(*) FROM member_activity WHERE chat_id = %s AND user_id = %s "
                        "AND status = 'member'", (joined, users[joined])) == 1  # fmt: skip
    # join_request.decided, once per request, with the sweep's outcome (as for a bulk decision's rows).
    events = [json.loads(b)["data"] for (b,) in stack.sql(
        "SELECT body FROM hook_events WHERE event_type = 'join_request.decided' ORDER BY seq")]  # fmt: skip
    assert sorted((e["group_id"], e["status"]) for e in events) == sorted((c, s) for c, (s, _e) in rows.items())
    # Decidable from the queue; a retry of the failed job does not call again either.
    listed = _cli(stack, "join-requests", "list", "--status", "ambiguous", "--json")
    assert listed.returncode == 0 and {r["chat_id"] for r in json.loads(listed.stdout)} == {lost, banned, cancelled}
    retried = _cli(stack, "jobs", "retry", str(job_of[lost]))
    assert retried.returncode == 0, retried.stdout + retried.stderr
    stack.wait_for(lambda: stack.scalar("SELECT status FROM jobs WHERE job_id = %s", (job_of[lost],)) == "done",
                   what="the retried job done")  # fmt: skip
    assert stack.scalar("SELECT status FROM join_requests WHERE chat_id = %s", (lost,)) == "ambiguous"
    assert decisions() == calls_before
    assert {u for u, s in _statuses(stack, cancelled).items() if s == "ambiguous"} == {cancelled_user}
