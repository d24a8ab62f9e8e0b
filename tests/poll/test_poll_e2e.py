"""`tgms poll` end to end: simulator (no webhook) → getUpdates → the intake's store → the worker."""

from __future__ import annotations

from tests.workers.harness import Stack

from .conftest import JOIN_JOB, approvals_per_request, start_poller


def test_join_requests_reach_the_worker_through_polling(stack: Stack) -> None:
    stack.start_worker("tgms")
    start_poller(stack)
    chat = stack.ctl.create_chat("supergroup", "Polled", bots=[stack.tgms_bot_id])
    stack.add_group(chat)
    made = [stack.ctl.join_request(chat["id"]) for _ in range(5)]
    stack.wait_for(
        lambda: stack.scalar("SELECT count(*) FROM join_requests WHERE status = 'approved'") == 5, what="approvals"
    )
    assert set(approvals_per_request(stack).values()) == {1}
    assert {(chat["id"], r["user_id"]) for r in made} == set(approvals_per_request(stack))
    assert stack.scalar("SELECT count(*) FROM jobs WHERE job_type = %s", (JOIN_JOB,)) == 5
