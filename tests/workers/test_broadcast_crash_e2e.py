"""A broadcast survives its workers: stopped gracefully, then SIGKILLed mid-call, then resumed.

Every group ends with exactly one copy, or is marked 'ambiguous' (a send whose outcome the killed
worker never learned) and then has at most one copy: nothing is ever sent twice.
"""

from __future__ import annotations

import signal

import pytest

from .harness import Stack

SEND = "sendMessage"
GROUPS = 60


def _count(stack: Stack, broadcast_id: int, status: str) -> int:
    return int(stack.scalar("SELECT count(*) FROM sent_messages WHERE broadcast_id = %s AND status = %s",
                            (broadcast_id, status)))  # fmt: skip


@pytest.mark.slow
def test_broadcast_resumes_after_sigterm_and_sigkill_without_duplicates(stack: Stack) -> None:
    ctl = stack.ctl
    env = {"TGMS_RATE_PER_SECOND": "10", "TGMS_JOB_LEASE_SECONDS": "3"}
    first = stack.start_worker("tgms", "--grace", "1", **env)
    stack.wait_jobs_idle()
    chats = [stack.add_group(ctl.create_chat("supergroup", bots=[stack.tgms_bot_id])) for _ in range(GROUPS)]
    broadcast_id = stack.broadcast({"text": "Crash-safe *hello*", "parse_mode": "Markdown"})

    # 1. Graceful stop mid-broadcast: the send in flight finishes and is recorded; the rest waits.
    stack.wait_for(lambda: _count(stack, broadcast_id, "sent") >= 10, what="first sends")
    stack.kill(first, signal.SIGTERM)
    assert first.returncode == 0
    assert _count(stack, broadcast_id, "sending") == 0
    assert _count(stack, broadcast_id, "ambiguous") == 0
    sent_before = _count(stack, broadcast_id, "sent")
    assert sent_before < GROUPS

    # 2. SIGKILL while a call is in flight: Telegram (the simulator) takes 4 s to answer it, and does
    #    deliver it, but the worker is gone by then.
    pending = stack.sql("SELECT chat_id FROM sent_messages WHERE broadcast_id = %s AND status = 'pending' "
                        "ORDER BY message_id", (broadcast_id,))  # fmt: skip
    hung = int(pending[4][0])
    ctl.add_fault("hang", method=SEND, chat_id=hung, seconds=4, apply=True)
    second = stack.start_worker("tgms", **env)
    stack.wait_for(
        lambda: (
            stack.scalar(
                "SELECT status FROM sent_messages WHERE broadcast_id = %s AND chat_id = %s", (broadcast_id, hung)
            )
            == "sending"
        ),
        what="the hung send in flight",
    )
    stack.kill(second, signal.SIGKILL)

    # 3. A fresh worker takes over once the dead one's leases expire.
    stack.start_worker("tgms", **env)
    status = stack.wait_for(
        lambda: stack.scalar("SELECT status FROM broadcasts WHERE broadcast_id = %s AND status <> 'running'",
                             (broadcast_id,)), timeout=90, what="broadcast finished")  # fmt: skip
    assert status == "done"
    stack.wait_for(lambda: any(c["chat_id"] == hung and c["ok"] for c in stack.calls(SEND)),
                   what="the hung call completed in the simulator")  # fmt: skip

    rows = dict(stack.sql("SELECT chat_id, status FROM sent_messages WHERE broadcast_id = %s", (broadcast_id,)))
    assert sorted(rows) == sorted(chats)
    assert set(rows.values()) <= {"sent", "ambiguous"}
    assert rows[hung] == "ambiguous"
    ok = stack.ok_sends()
    for chat, row_status in rows.items():
        if row_status == "sent":
            assert ok.get(chat) == 1, chat
        else:
            assert ok.get(chat, 0) <= 1, chat
    assert ok[hung] == 1  # delivered once, reported as ambiguous, never resent
    assert max(ok.values()) == 1
