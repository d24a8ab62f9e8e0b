"""Scenario 6: a burst of 10,000 join requests, queued in the simulator at once and pushed to the webhook
as fast as it delivers (up to 40 connections, as Telegram does), while a 429 hits mid-burst.

Checked from both sides: the simulator's record (Telegram's view) has exactly one successful approval
per request and nothing pending; TGMS logged each request once, approved, with one job each. Limits:
approvals take no send-rate token (workers/join_requests.py: a person is waiting; TGMS_RATE_PER_SECOND
paces messages), so the limit that does bind them is checked: Telegram's 429 pauses the bot, and no
approval starts until the pause is over. Reported: wall time, rate, peak approvals in any 1-s window,
peak queue depth (pending jobs, sampled), approval latency.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.workers.harness import Stack, percentile

from .oracle import Sampler, max_in_window, per_request
from .results import ScenarioFactory
from .world import StackFactory, managed_chats

APPROVE = "approveChatJoinRequest"
REQUESTS = int(os.environ.get("TGMS_RELIABILITY_BURST", "10000"))
GROUPS = 50
CONCURRENCY = 32
PAUSE = 3  # retry_after of the injected 429, seconds
MARGIN = 0.5  # calls already past their pause check when the 429 landed may still go out this long after


@pytest.mark.slow
@pytest.mark.timeout(900)  # about 2 minutes here; far longer on a machine busy with other work
def test_burst_of_join_requests_each_approved_once_within_limits(
    db_url: str, make_stack: StackFactory, scenario: ScenarioFactory
) -> None:
    rec = scenario(
        "6", f"Burst: {REQUESTS:,} join requests",
        injected=f"{REQUESTS:,} chat_join_request updates queued in the simulator at once ({GROUPS} groups), "
        "pushed over up to 40 webhook connections; one 429 (retry_after "
        f"{PAUSE}) on an approval mid-burst; 1 TGMS worker, concurrency {CONCURRENCY}",
        checked="simulator: exactly 1 successful approval per request, no other approval call but the 429, "
        "no request left pending; DB: one approved join_requests row and one done job per request; no "
        "approval starts while the bot is paused; every update delivered (requests and their follow-ups) stored "
        "once, with one job or (the follow-ups: member activity only) recorded on intake",
    )  # fmt: skip
    stack: Stack = make_stack(db_url, env={"TGMS_WORKER_CONCURRENCY": str(CONCURRENCY)})
    # No main worker: on 2 cores it would take half the CPU from approving. The updates Telegram sends
    # about each new member (chat_member, a service message) are stored and wait in the main pool.
    stack.start_worker("tgms")
    stack.wait_jobs_idle()
    chats = managed_chats(stack, GROUPS)
    state = stack.sim.state

    def depth() -> int:
        # The claim index covers exactly the pending rows of a pool: a cheap count while the burst runs.
        return int(stack.scalar("SELECT count(*) FROM jobs WHERE status = 'pending' AND pool = 'tgms'"))

    created: dict[tuple[int, int], float] = {}
    with Sampler(depth, interval=0.25) as sampler:
        started = time.time()
        for i in range(REQUESTS):
            chat = chats[i % GROUPS]
            request = state.create_join_request(chat, None)
            created[(chat, request.user_id)] = time.time()
        queued = time.time() - started
        stack.wait_for(lambda: stack.scalar("SELECT count(*) FROM join_requests") >= REQUESTS * 0.4,
                       timeout=300, interval=0.5, what="40% of the requests processed")  # fmt: skip
        stack.ctl.add_fault("flood", method=APPROVE, retry_after=PAUSE, times=1)
        stack.wait_for(lambda: stack.scalar("SELECT count(*) FROM join_requests WHERE status = 'approved'")
                       >= REQUESTS, timeout=600, interval=0.5, what="every request approved")  # fmt: skip
    stack.wait_jobs_idle("tgms_process_join_request")

    calls = stack.calls(APPROVE)
    ok_calls = [c for c in calls if c["ok"]]
    refused = [c for c in calls if not c["ok"]]
    # Telegram's view: one approval per request, nothing else but the one injected 429.
    assert per_request(ok_calls) == dict.fromkeys(created, 1)
    assert [(c["error_code"], c["fault_id"] is not None) for c in refused] == [(429, True)]
    assert all(not c["join_requests"] for c in [stack.ctl.chat(chat) for chat in chats])
    # TGMS's view: each request logged once, approved, by one job that ran once.
    assert stack.sql("SELECT status, count(*) FROM join_requests GROUP BY status") == [("approved", REQUESTS)]
    assert stack.sql("SELECT status, count(*) FROM jobs WHERE job_type = 'tgms_process_join_request' "
                     "GROUP BY status") == [("done", REQUESTS)]  # fmt: skip
    # A job ran again only after a transient network error (e.g. a kept-alive connection the server had
    # just closed): never for a database error or a bug.
    retried = stack.sql("SELECT retries, last_error FROM jobs WHERE job_type = 'tgms_process_join_request' "
                        "AND retries > 0")  # fmt: skip
    assert all(str(e).startswith("workers.join_requests.TransientTelegramError") for _, e in retried), retried
    # The 429 paused the bot in every process: no approval started during the pause (after a margin
    # for calls already past their check), and the paused job waited it out without counting a retry.
    paused_until = float(stack.scalar("SELECT EXTRACT(EPOCH FROM paused_until) FROM rate_buckets WHERE key = %s",
                                      (f"bot:{stack.tgms_bot_id}",)))  # fmt: skip
    pause_start = paused_until - PAUSE
    assert abs(pause_start - (float(refused[0]["at"]) + refused[0]["duration_ms"] / 1000)) < 1.0
    during = [c for c in ok_calls if pause_start + MARGIN <= float(c["at"]) < paused_until - 0.05]
    assert during == []
    assert any(float(c["at"]) >= paused_until for c in ok_calls)  # the burst did go on after the pause
    # Nothing lost on the way in either: every update Telegram delivered (the requests and the follow-up
    # updates about each new member) is stored once, with its job, or its member activity recorded on intake.
    stack.wait_for(lambda: not stack.ctl.pending_updates(stack.tgms_bot_id), timeout=120, what="deliveries done")
    [delivered] = [b["delivered"] for b in stack.ctl.webhook_deliveries(stack.tgms_bot_id, attempts=0)["bots"]
                   if b["bot_id"] == stack.tgms_bot_id]  # fmt: skip
    assert stack.scalar("SELECT count(*) FROM webhook_updates WHERE bot = 'tgms'") == delivered
    recorded = stack.scalar("SELECT count(*) FROM webhook_updates WHERE bot = 'tgms' AND job_id IS NULL "
                            "AND update_type IN ('message', 'chat_member')")  # fmt: skip
    assert stack.scalar("SELECT count(*) FROM jobs WHERE job_type IN ('tgms_process_join_request', "
                        "'process_telegram_update')") == delivered - recorded  # fmt: skip
    assert stack.scalar("SELECT count(*) FROM webhook_updates WHERE job_id IS NULL") == recorded

    last = max(float(c["at"]) for c in ok_calls)
    latencies = [float(c["at"]) - created[(int(c["chat_id"]), int(c["params"]["user_id"]))] for c in ok_calls]
    rec.measure("requests", REQUESTS)
    rec.measure("updates stored", delivered)
    rec.measure("recorded on intake (no job)", recorded)
    rec.measure("queued in (s)", round(queued, 1))
    rec.measure("all approved after (s)", round(last - started, 1))
    rec.measure("mean rate (/s)", round(REQUESTS / (last - started)))
    rec.measure("peak approvals in any 1 s", max_in_window(float(c["at"]) for c in ok_calls))
    rec.measure("peak pending jobs", int(sampler.peak()))
    rec.measure("approvals during the 3 s pause (after 0.5 s)", len(during))
    rec.measure("latency p50/p99 (s)", f"{percentile(latencies, 0.5):.2f}/{percentile(latencies, 0.99):.2f}")
    rec.measure("jobs retried after a network error", len(retried))
