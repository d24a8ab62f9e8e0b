"""Join requests end to end: simulator → webhook → tgms_process_join_request → approveChatJoinRequest."""

from __future__ import annotations

from typing import Any

from .harness import Stack

APPROVE = "approveChatJoinRequest"


def _outcome(stack: Stack, chat_id: int, user_id: int) -> tuple[Any, ...] | None:
    rows = stack.sql(
        "SELECT status, error, bot FROM join_requests WHERE chat_id = %s AND user_id = %s", (chat_id, user_id)
    )
    assert len(rows) <= 1, rows
    return rows[0] if rows else None


def _final(stack: Stack, chat_id: int, user_id: int) -> str | None:
    row = _outcome(stack, chat_id, user_id)
    return None if row is None or row[0] == "processing" else str(row[0])


def _approvals(stack: Stack, chat_id: int, user_id: int) -> int:
    calls = stack.calls(APPROVE, chat_id=chat_id)
    return sum(1 for c in calls if c["params"].get("user_id") in (user_id, str(user_id)))


def test_every_outcome_is_logged_once_and_only_managed_active_groups_are_approved(stack: Stack) -> None:
    ctl = stack.ctl
    stack.start_worker("tgms")
    stack.start_worker("main")
    tgms_only = [stack.tgms_bot_id]
    managed = ctl.create_chat("supergroup", "Managed", bots=tgms_only)
    basic = ctl.create_chat("group", "Managed basic group", bots=tgms_only)
    unmanaged = ctl.create_chat("supergroup", "Not ours", bots=tgms_only)
    inactive = ctl.create_chat("supergroup", "Inactive", bots=tgms_only)
    # Both bots are admins here: both get the request, it is answered once.
    both_bots = ctl.create_chat("supergroup", "Both bots")
    no_rights = ctl.create_chat("supergroup", "Rights lost", bots=tgms_only)
    stack.add_group(managed, phase="monitoring")
    stack.add_group(basic)
    stack.add_group(inactive, is_active=False, deactivated_reason="deactivated by an operator")
    stack.add_group(no_rights)
    stack.add_group(both_bots)
    # The rights were taken away after Telegram sent the request (Telegram's answer then).
    ctl.add_fault(
        "error", method=APPROVE, chat_id=no_rights["id"], error_code=400, description="Bad Request: CHAT_ADMIN_REQUIRED"
    )

    approved = ctl.join_request(managed["id"], {"first_name": "Ann", "username": "ann"})
    approved_basic = ctl.join_request(basic["id"])
    skipped = ctl.join_request(unmanaged["id"])
    skipped_inactive = ctl.join_request(inactive["id"])
    failed = ctl.join_request(no_rights["id"])
    twice = ctl.join_request(both_bots["id"])

    cases = {
        (managed["id"], approved["user_id"]): "approved",
        (basic["id"], approved_basic["user_id"]): "approved",
        (unmanaged["id"], skipped["user_id"]): "skipped_unmanaged",
        (inactive["id"], skipped_inactive["user_id"]): "skipped_inactive",
        (no_rights["id"], failed["user_id"]): "failed",
        (both_bots["id"], twice["user_id"]): "approved",
    }
    stack.wait_for(lambda: all(_final(stack, c, u) for c, u in cases), what="join request outcomes")
    for (chat_id, user_id), status in cases.items():
        row = _outcome(stack, chat_id, user_id)
        assert row is not None and row[0] == status, (chat_id, row)
        assert row[2] == "tgms" or chat_id == both_bots["id"]
    assert "CHAT_ADMIN_REQUIRED" in (_outcome(stack, no_rights["id"], failed["user_id"]) or ("", ""))[1]

    # Approved users are members in Telegram and their activity is recorded (for inactivity kicks).
    assert ctl.join_requests(managed["id"]) == [] or all(
        r["user_id"] != approved["user_id"] for r in ctl.join_requests(managed["id"])
    )
    activity = stack.sql("SELECT status, username FROM member_activity WHERE chat_id = %s AND user_id = %s",
                         (managed["id"], approved["user_id"]))  # fmt: skip
    assert activity == [("member", "ann")]
    # Skipped requests were never sent to Telegram.
    assert stack.calls(APPROVE, chat_id=unmanaged["id"]) == []
    assert stack.calls(APPROVE, chat_id=inactive["id"]) == []
    stack.wait_jobs_idle("tgms_process_join_request")
    for chat_id, user_id in [
        (managed["id"], approved["user_id"]),
        (basic["id"], approved_basic["user_id"]),
        (both_bots["id"], twice["user_id"]),
    ]:
        assert _approvals(stack, chat_id, user_id) == 1


def test_already_member_expired_and_rerun_of_the_same_job(stack: Stack) -> None:
    ctl = stack.ctl
    stack.start_worker("tgms")
    chat = ctl.create_chat("supergroup", "G", bots=[stack.tgms_bot_id])
    stack.add_group(chat)
    ctl.add_fault(
        "error",
        method=APPROVE,
        chat_id=chat["id"],
        error_code=400,
        description="Bad Request: USER_ALREADY_PARTICIPANT",
        times=1,
    )
    first = ctl.join_request(chat["id"])
    assert stack.wait_for(lambda: _final(stack, chat["id"], first["user_id"])) == "already_member"

    ctl.add_fault(
        "error",
        method=APPROVE,
        chat_id=chat["id"],
        error_code=400,
        description="Bad Request: HIDE_REQUESTER_MISSING",
        times=1,
    )
    second = ctl.join_request(chat["id"])
    assert stack.wait_for(lambda: _final(stack, chat["id"], second["user_id"])) == "expired"

    third = ctl.join_request(chat["id"])
    assert stack.wait_for(lambda: _final(stack, chat["id"], third["user_id"])) == "approved"
    stack.wait_jobs_idle("tgms_process_join_request")
    job_id = stack.scalar(
        "SELECT job_id FROM jobs WHERE job_type = 'tgms_process_join_request' "
        "AND (payload->'update'->'chat_join_request'->'from'->>'id')::bigint = %s",
        (third["user_id"],),
    )
    calls_before = len(stack.calls(APPROVE))
    # Run the very same job again (as after a lost completion): no second call, no second row.
    stack.sql("UPDATE jobs SET status = 'pending', run_at = now(), finished_at = NULL WHERE job_id = %s", (job_id,))
    stack.wait_for(lambda: stack.scalar("SELECT status FROM jobs WHERE job_id = %s", (job_id,)) == "done",
                   what="re-run done")  # fmt: skip
    assert len(stack.calls(APPROVE)) == calls_before
    assert stack.scalar("SELECT count(*) FROM join_requests WHERE chat_id = %s", (chat["id"],)) == 3
    assert _final(stack, chat["id"], third["user_id"]) == "approved"

    # A request that reaches us after its basic group became a supergroup: Telegram refuses it with the
    # new id; the request is logged as failed and the group lives on under its new id.
    basic = ctl.create_chat("group", "Basic", bots=[stack.tgms_bot_id])
    stack.add_group(basic)
    new_id = int(ctl.upgrade(basic["id"])["id"])
    late_user = 4242
    stack.enqueue("tgms_process_join_request", {"bot": "tgms", "update_id": 1, "update_type": "chat_join_request",
                  "update": {"update_id": 1, "chat_join_request": {
                      "chat": {"id": basic["id"], "type": "group", "title": "Basic"},
                      "from": {"id": late_user, "is_bot": False, "first_name": "Late"},
                      "user_chat_id": late_user, "date": 1_700_000_000}}})  # fmt: skip
    stack.wait_jobs_idle("tgms_process_join_request")
    status, error = stack.sql("SELECT status, error FROM join_requests WHERE user_id = %s", (late_user,))[0]
    assert status == "failed" and str(new_id) in error
    assert stack.sql("SELECT group_id FROM managed_groups WHERE group_id IN (%s, %s)", (basic["id"], new_id)) == [
        (new_id,)
    ]


def test_429_snoozes_the_job_without_counting_a_retry(stack: Stack) -> None:
    ctl = stack.ctl
    stack.start_worker("tgms")
    chat = ctl.create_chat("supergroup", "G", bots=[stack.tgms_bot_id])
    stack.add_group(chat)
    ctl.add_fault("flood", method=APPROVE, chat_id=chat["id"], retry_after=1, times=1)
    request = ctl.join_request(chat["id"])
    stack.wait_for(lambda: _final(stack, chat["id"], request["user_id"]) == "approved",
                   what="approved after the 429", timeout=20)  # fmt: skip
    stack.wait_jobs_idle("tgms_process_join_request")
    attempts = stack.calls(APPROVE, chat_id=chat["id"])
    assert [c["ok"] for c in attempts] == [False, True]
    assert attempts[1]["at"] - attempts[0]["at"] >= 0.9  # waited retry_after
    assert stack.sql("SELECT status, retries FROM jobs WHERE job_type = 'tgms_process_join_request'") == [("done", 0)]
    # The seed's health query (bot_name = 'tgms_worker') sees the TGMS worker alive.
    assert stack.sql("SELECT status FROM bot_health WHERE bot_name = 'tgms_worker'") == [("running",)]
