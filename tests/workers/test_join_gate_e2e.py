"""The join gate end to end: simulator → webhook → TGMS worker → simulator, with the requester's side
played through the simulator's control API (private messages, button presses)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx

from .harness import ADMIN_KEY, REPO, Stack

APPROVE, DECLINE = "approveChatJoinRequest", "declineChatJoinRequest"


def _row(stack: Stack, chat_id: int, user_id: int) -> dict[str, Any] | None:
    rows = stack.sql(
        "SELECT request_id, status, note, dm_sent_at, answered_at, decided_at, queued_at, held_at, error "
        "FROM join_requests WHERE chat_id = %s AND user_id = %s",
        (chat_id, user_id),
    )
    assert len(rows) <= 1, rows
    if not rows:
        return None
    keys = ("request_id", "status", "note", "dm_sent_at", "answered_at", "decided_at", "queued_at", "held_at", "error")
    return dict(zip(keys, rows[0], strict=True))


def _status(stack: Stack, chat_id: int, user_id: int) -> str | None:
    row = _row(stack, chat_id, user_id)
    return None if row is None else str(row["status"])


def _wait_status(stack: Stack, chat_id: int, user_id: int, wanted: str, timeout: float = 30) -> dict[str, Any]:
    stack.wait_for(lambda: _status(stack, chat_id, user_id) == wanted, what=f"request {wanted}", timeout=timeout)
    row = _row(stack, chat_id, user_id)
    assert row is not None
    return row


def _dm(stack: Stack, user_id: int) -> dict[str, Any]:
    """The verification message the bot sent the requester (waits for it)."""

    def found() -> dict[str, Any] | None:
        rows = [r for r in stack.ctl.messages(chat_id=user_id, sender="bots") if r["message"].get("reply_markup")]
        return rows[-1] if rows else None

    dm = stack.wait_for(found, what="verification message")
    assert dm is not None
    return dm


def _buttons(dm: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for row in dm["message"]["reply_markup"]["inline_keyboard"] for b in row]


def _calls(stack: Stack, method: str, chat_id: int, user_id: int) -> int:
    return sum(
        1
        for c in stack.calls(method, chat_id=chat_id)
        if c["ok"] and c["params"].get("user_id") in (user_id, str(user_id))
    )


def _idle(stack: Stack) -> None:
    """No TGMS job due or running (updates for the main worker, which these tests do not run, may wait)."""
    query = (
        "SELECT count(*) FROM jobs WHERE pool = 'tgms' "
        "AND (status = 'running' OR (status = 'pending' AND run_at <= now()))"
    )
    stack.wait_for(lambda: stack.scalar(query) == 0, what="TGMS jobs idle")


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tgms_tui.commands.cli", *args],
        cwd=REPO,
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _api(stack: Stack, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    assert stack.webhook_url is not None
    return httpx.request(method, f"{stack.webhook_url}{path}", json=body, headers={"x-api-key": ADMIN_KEY},
                         timeout=10)  # fmt: skip


def _press(stack: Stack, user_id: int, dm: dict[str, Any], data: str) -> dict[str, Any]:
    query = stack.ctl.press(user_id, dm["chat_id"], dm["message_id"], data)
    return stack.wait_for(
        lambda: (q := stack.ctl.callback_query(query["callback_query_id"]))["answered"] and q,
        what="callback query answered",
    )


def test_verify_press_approves_once_and_a_second_press_is_told_it_was_handled(stack: Stack) -> None:
    ctl = stack.ctl
    stack.start_worker("tgms")
    chat = ctl.create_chat("supergroup", "Verified", bots=[stack.tgms_bot_id])
    stack.add_group(chat)
    done = _cli(stack, "groups", "set", str(chat["id"]), "--join-policy", "verify", "--verify-text", "Hi! {group}")
    assert done.returncode == 0, done.stdout + done.stderr

    request = ctl.join_request(chat["id"], {"first_name": "Ann"})
    assert request["user_chat_id"] == request["user_id"]
    user = request["user_id"]
    dm = _dm(stack, user)
    assert dm["text"].startswith("Hi! Verified")
    [button] = _buttons(dm)
    assert button["text"] == "I'm human" and button["callback_data"].startswith("jg:")
    assert _status(stack, chat["id"], user) == "verifying"

    answer = _press(stack, user, dm, button["callback_data"])
    assert answer["answer"]["text"].startswith("Thanks")
    row = _wait_status(stack, chat["id"], user, "approved")
    assert row["dm_sent_at"] and row["answered_at"] and row["decided_at"]
    assert _calls(stack, APPROVE, chat["id"], user) == 1
    again = _press(stack, user, dm, button["callback_data"])
    assert again["answer"]["text"] == "This request was already handled."
    _idle(stack)
    assert _calls(stack, APPROVE, chat["id"], user) == 1


def test_wrong_answer_no_answer_and_unreachable_requesters(stack: Stack) -> None:
    ctl = stack.ctl
    stack.start_worker("tgms")
    bots = [stack.tgms_bot_id]
    declines = ctl.create_chat("supergroup", "Declines", bots=bots)
    queues = ctl.create_chat("supergroup", "Queues", bots=bots)
    question = {"join_policy": "verify", "verify_question": "2 + 2 = ?", "verify_answers": ["4", "5", "22"],
                "verify_timeout_seconds": 10}  # fmt: skip
    stack.add_group(declines)
    stack.add_group(queues)
    for chat, fallback in ((declines, "decline"), (queues, "manual")):
        response = _api(stack, "PATCH", f"/api/tgms/groups/{chat['id']}", {**question, "verify_fallback": fallback})
        assert response.status_code == 200, response.text
        assert response.json()["group"]["join_policy"] == "verify"
    assert _api(stack, "PATCH", f"/api/tgms/groups/{declines['id']}", {"join_policy": "strict"}).status_code == 422

    # Wrong answer.
    wrong = ctl.join_request(declines["id"])["user_id"]
    wrong_q = ctl.join_request(queues["id"])["user_id"]
    for user in (wrong, wrong_q):
        dm = _dm(stack, user)
        labels = [b["text"] for b in _buttons(dm)]
        assert sorted(labels) == ["22", "4", "5"]
        bad = next(b for b in _buttons(dm) if b["text"] == "5")
        _press(stack, user, dm, bad["callback_data"])
    row = _wait_status(stack, declines["id"], wrong, "verification_failed")
    assert row["note"] == "wrong answer" and row["answered_at"]
    assert _calls(stack, DECLINE, declines["id"], wrong) == 1
    row = _wait_status(stack, queues["id"], wrong_q, "pending")
    assert row["note"] == "wrong answer" and row["queued_at"]
    assert _calls(stack, DECLINE, queues["id"], wrong_q) == 0

    # Blocked the bot: cannot be messaged.
    blocked = ctl.create_user()["id"]
    ctl.private_message(blocked, "/start", bot=stack.tgms_bot_id)
    ctl.block_bot(blocked, stack.tgms_bot_id)
    ctl.join_request(declines["id"], blocked)
    row = _wait_status(stack, declines["id"], blocked, "verification_failed")
    assert "blocked" in row["note"]

    # Never answers: after verify_timeout_seconds, declined or queued.
    silent = ctl.join_request(declines["id"])["user_id"]
    silent_q = ctl.join_request(queues["id"])["user_id"]
    _dm(stack, silent)
    row = _wait_status(stack, declines["id"], silent, "verification_failed", timeout=40)
    assert row["note"] == "no answer in time"
    row = _wait_status(stack, queues["id"], silent_q, "pending", timeout=40)
    assert row["note"] == "no answer in time"
    assert _calls(stack, APPROVE, declines["id"], silent) == 0


def test_a_request_whose_five_minute_window_is_over_cannot_be_messaged(stack: Stack) -> None:
    ctl = stack.ctl
    chat = ctl.create_chat("supergroup", "Late", bots=[stack.tgms_bot_id])
    stack.add_group(chat, join_policy="verify", verify_fallback="manual")
    user = ctl.join_request(chat["id"])["user_id"]
    stack.wait_for(lambda: stack.scalar("SELECT count(*) FROM jobs WHERE job_type = 'tgms_process_join_request'"),
                   what="job stored")  # fmt: skip
    with stack.sim.state.lock:  # the worker was down for more than 5 minutes
        stack.sim.state.chats[chat["id"]].join_requests[user].date -= 301
    stack.start_worker("tgms")
    row = _wait_status(stack, chat["id"], user, "pending")
    assert "bot can't initiate conversation with a user" in row["note"]
    assert next(c for c in stack.calls("sendMessage") if not c["ok"])["error_code"] == 403


def test_manual_queue_from_cli_and_api(stack: Stack) -> None:
    ctl = stack.ctl
    stack.start_worker("tgms")
    chat = ctl.create_chat("supergroup", "Manual", bots=[stack.tgms_bot_id])
    stack.add_group(chat, join_policy="manual")
    users = [ctl.join_request(chat["id"])["user_id"] for _ in range(4)]
    rows = [_wait_status(stack, chat["id"], u, "pending") for u in users]
    assert _calls(stack, APPROVE, chat["id"], users[0]) == 0

    listed = _cli(stack, "join-requests", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert sorted(r["user_id"] for r in json.loads(listed.stdout)) == sorted(users)
    api_list = _api(stack, "GET", "/api/tgms/join-requests?status=pending")
    assert api_list.status_code == 200 and api_list.json()["count"] == 4

    assert _cli(stack, "join-requests", "approve", str(rows[0]["request_id"])).returncode == 0
    assert _api(stack, "POST", f"/api/tgms/join-requests/{rows[1]['request_id']}/decline").status_code == 202
    _wait_status(stack, chat["id"], users[0], "approved")
    _wait_status(stack, chat["id"], users[1], "declined")
    assert _api(stack, "POST", f"/api/tgms/join-requests/{rows[1]['request_id']}/approve").status_code == 409
    # All that still wait in the group, at once.
    bulk = _api(stack, "POST", "/api/tgms/join-requests/approve", {"group_id": chat["id"]})
    assert bulk.status_code == 202 and sorted(bulk.json()["request_ids"]) == sorted(r["request_id"] for r in rows[2:])
    for user in users[2:]:
        _wait_status(stack, chat["id"], user, "approved")
    _idle(stack)
    assert [_calls(stack, APPROVE, chat["id"], u) for u in users] == [1, 0, 1, 1]
    assert _calls(stack, DECLINE, chat["id"], users[1]) == 1
    assert _api(stack, "GET", "/api/tgms/join-requests").json()["count"] == 0
    assert httpx.get(f"{stack.webhook_url}/api/tgms/join-requests", timeout=5).status_code == 401


def test_a_raid_holds_the_group_until_released(stack: Stack) -> None:
    ctl = stack.ctl
    stack.start_worker("tgms")
    chat = ctl.create_chat("supergroup", "Raided", bots=[stack.tgms_bot_id])
    calm = ctl.create_chat("supergroup", "Calm", bots=[stack.tgms_bot_id])
    stack.add_group(chat, raid_per_minute=5)
    stack.add_group(calm, raid_per_minute=5)
    users = [ctl.join_request(chat["id"])["user_id"] for _ in range(12)]
    stack.wait_for(
        lambda: stack.scalar("SELECT count(*) FROM join_requests WHERE chat_id = %s AND status IN "
                             "('approved', 'held')", (chat["id"],)) == 12,
        what="raid handled",
    )  # fmt: skip
    _idle(stack)
    statuses = [_status(stack, chat["id"], u) for u in users]
    assert statuses.count("approved") == 5 and statuses.count("held") == 7
    assert sum(_calls(stack, APPROVE, chat["id"], u) for u in users) == 5
    assert stack.scalar("SELECT held_until > now() FROM managed_groups WHERE group_id = %s", (chat["id"],))
    # Other groups are not affected; new requests to the raided one wait.
    other = ctl.join_request(calm["id"])["user_id"]
    _wait_status(stack, calm["id"], other, "approved")
    late = ctl.join_request(chat["id"])["user_id"]
    _wait_status(stack, chat["id"], late, "held")
    gate = _api(stack, "GET", "/api/tgms/join-gate").json()
    assert [g["group_id"] for g in gate["held_groups"]] == [chat["id"]]

    released = _cli(stack, "groups", "release", str(chat["id"]))
    assert released.returncode == 0, released.stdout
    after = ctl.join_request(chat["id"])["user_id"]
    _wait_status(stack, chat["id"], after, "approved")
    # Held requests stay in the queue for the operator.
    listed = _api(stack, "GET", f"/api/tgms/join-requests?status=held&group_id={chat['id']}").json()
    assert listed["count"] == 8


def test_a_worker_killed_between_the_message_and_the_press_approves_once(stack: Stack) -> None:
    ctl = stack.ctl
    worker = stack.start_worker("tgms", TGMS_JOB_LEASE_SECONDS="3")
    chat = ctl.create_chat("supergroup", "Crash", bots=[stack.tgms_bot_id])
    stack.add_group(chat, join_policy="verify")
    user = ctl.join_request(chat["id"])["user_id"]
    dm = _dm(stack, user)
    _wait_status(stack, chat["id"], user, "verifying")
    stack.wait_jobs_idle("tgms_process_join_request")
    stack.kill(worker)
    [button] = _buttons(dm)
    query = ctl.press(user, dm["chat_id"], dm["message_id"], button["callback_data"])
    stack.start_worker("tgms", TGMS_JOB_LEASE_SECONDS="3")
    _wait_status(stack, chat["id"], user, "approved")
    stack.wait_for(lambda: ctl.callback_query(query["callback_query_id"])["answered"], what="answered")
    _idle(stack)
    assert _calls(stack, APPROVE, chat["id"], user) == 1


def test_forged_presses_approve_nobody(stack: Stack) -> None:
    ctl = stack.ctl
    stack.start_worker("tgms")
    chat = ctl.create_chat("supergroup", "Forged", bots=[stack.tgms_bot_id])
    stack.add_group(chat, join_policy="verify")
    user = ctl.join_request(chat["id"])["user_id"]
    [button] = _buttons(_dm(stack, user))
    # Forged presses approve nobody: another user with the right data, the right token with a made-up code.
    token = button["callback_data"].split(":")[1]
    for presser, data in ((user + 1, button["callback_data"]), (user, f"jg:{token}:forged")):
        update = {"update_id": 1, "callback_query": {"id": "1", "from": {"id": presser, "is_bot": False,
                  "first_name": "X"}, "chat_instance": "1", "data": data}}  # fmt: skip
        stack.enqueue("tgms_process_callback_query", {"bot": "tgms", "update": update})
        _idle(stack)
    assert _status(stack, chat["id"], user) == "verification_failed"  # the made-up code is a wrong answer
    assert _calls(stack, APPROVE, chat["id"], user) == 0


def test_a_press_or_deadline_whose_job_ended_for_good_is_swept_without_another_call(stack: Stack) -> None:
    """A verification press's job (approve) and a deadline's job (decline) claim their request
    'processing' before the call. Cancelled while it waits to retry Telegram's 500, such a job never
    settles its row; the periodic sweep makes it ambiguous (an operator decides it again) without
    calling approve or decline again."""
    ctl = stack.ctl
    stack.start_worker("tgms", TGMS_JOB_LEASE_SECONDS="3")
    chat = ctl.create_chat("supergroup", "Swept", bots=[stack.tgms_bot_id])
    stack.add_group(chat)
    verify = {"join_policy": "verify", "verify_timeout_seconds": 600, "verify_fallback": "decline"}
    assert _api(stack, "PATCH", f"/api/tgms/groups/{chat['id']}", verify).status_code == 200
    for method in (APPROVE, DECLINE):
        ctl.add_fault("error", method=method, chat_id=chat["id"], times=None, error_code=500)
    presser, silent = (ctl.join_request(chat["id"])["user_id"] for _ in range(2))
    dm = _dm(stack, presser)
    [button] = _buttons(dm)
    ctl.press(presser, dm["chat_id"], dm["message_id"], button["callback_data"])
    silent_id = _wait_status(stack, chat["id"], silent, "verifying")["request_id"]
    deadline = stack.enqueue("tgms_join_request_deadline", {"request_id": silent_id, "kind": "verify"})

    def retrying(job_type: str) -> int:
        """The job of `job_type` once it waits to retry Telegram's 500."""
        query = "SELECT job_id FROM jobs WHERE job_type = %s AND status = 'pending' AND retries >= 1"
        return int(stack.wait_for(lambda: stack.scalar(query, (job_type,)), what=f"{job_type} retrying"))

    jobs = {t: retrying(t) for t in ("tgms_process_callback_query", "tgms_join_request_deadline")}
    assert jobs["tgms_join_request_deadline"] == deadline
    assert {_status(stack, chat["id"], u) for u in (presser, silent)} == {"processing"}
    for job_id in jobs.values():
        done = _cli(stack, "jobs", "cancel", str(job_id))
        assert done.returncode == 0, done.stdout + done.stderr
    ctl.clear_faults()
    calls_before = len(stack.calls(APPROVE)), len(stack.calls(DECLINE))

    pressed = _wait_status(stack, chat["id"], presser, "ambiguous")
    timed_out = _wait_status(stack, chat["id"], silent, "ambiguous")
    press_job = jobs["tgms_process_callback_query"]
    assert f"job {press_job} handling this request ended (cancelled) after recording its intent to approve" in (
        pressed["error"] or ""
    )
    assert f"job {deadline} handling this request ended (cancelled) after recording its intent to decline:" in (
        timed_out["error"] or ""
    )
    _idle(stack)
    assert (len(stack.calls(APPROVE)), len(stack.calls(DECLINE))) == calls_before  # the sweep called nothing
