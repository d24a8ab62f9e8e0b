"""Scenario 6: a burst of 10,000 join requests, queued in the simulator at once and pushed to the webhook
as fast as it delivers (up to 40 connections, as Telegram does), while a 429 hits mid-burst.

Checked from both sides: the simulator's record (Telegram's view) has exactly one successful approval
per request and nothing pending; TGMS logged each request once, approved, with one job each. Limits:
approvals take no send-rate token (workers/join_requests.py: a person is waiting), so the limits that
do bind them are checked — Telegram's 429 pause (no approval while the bot is paused, in any worker)
and the configured worker concurrency (never more approvals in flight). Reported: wall time, rate,
peak queue depth, peak approvals in any 1-s window, approval latency.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.workers.harness import Stack, percentile

from .oracle import Sampler, max_concurrent, max_in_window, per_request
from .results import ScenarioFactory
from .world import StackFactory, managed_chats

APPROVE = "approveChatJoinRequest"
REQUESTS = int(os.environ.get("TGMS_RELIABILITY_BURST", "10000"))
GROUPS = 50
CONCURRENCY = 32
PAUSE = 3  # retry_after of the injected 429, seconds
MARGIN = 0.5  # calls already past their pause check when the 429 landed may still go out this long after


@pytest.mark.slow
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
        "approval starts while the bot is paused; approvals in flight <= configured concurrency",
    )  # fmt: skip
    stack: Stack = make_stack(db_url, env={"TGMS_WORKER_CONCURRENCY": str(CONCURRENCY)})
    stack.start_worker("tgms")
    stack.start_worker("main")  # the approvals' follow-up updates (chat_member, service messages)
    stack.wait_jobs_idle()
    chats = managed_chats(stack, GROUPS)
    state = stack.sim.state

    def depth() -> tuple[int, int]:
        row = stack.sql("SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'running') "
                        "FROM jobs WHERE job_type = 'tgms_process_join_request'")[0]  # fmt: skip
        return int(row[0]), int(row[1])

    created: dict[tuple[int, int], float] = {}
    with Sampler(depth, interval=0.1) as sampler:
        started = time.time()
        for i in range(REQUESTS):
            chat = chats[i % GROUPS]
            request = state.create_join_request(chat, None)
            created[(chat, request.user_id)] = time.time()
        queued = time.time() - started
        stack.wait_for(lambda: stack.scalar("SELECT count(*) FROM join_requests") >= REQUESTS * 0.4,
                       timeout=120, what="40% of the requests processed")  # fmt: skip
        stack.ctl.add_fault("flood", method=APPROVE, retry_after=PAUSE, times=1)
        stack.wait_for(lambda: stack.scalar("SELECT count(*) FROM join_requests WHERE status = 'approved'")
                       >= REQUESTS, timeout=240, interval=0.2, what="every request approved")  # fmt: skip
        finished = time.time()
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
    assert stack.sql("SELECT status, count(*), max(retries) FROM jobs WHERE job_type = 'tgms_process_join_request' "
                     "GROUP BY status") == [("done", REQUESTS, 0)]  # fmt: skip
    # The 429 paused the bot in every process: no approval started during the pause (after a margin
    # for calls already past their check), and the paused job waited it out without counting a retry.
    paused_until = float(stack.scalar("SELECT EXTRACT(EPOCH FROM paused_until) FROM rate_buckets WHERE key = %s",
                                      (f"bot:{stack.tgms_bot_id}",)))  # fmt: skip
    pause_start = paused_until - PAUSE
    assert abs(pause_start - (float(refused[0]["at"]) + refused[0]["duration_ms"] / 1000)) < 1.0
    during = [c for c in ok_calls if pause_start + MARGIN <= float(c["at"]) < paused_until - 0.05]
    assert during == []
    assert any(float(c["at"]) >= paused_until for c in ok_calls)  # the burst did go on after the pause
    in_flight = max_concurrent(calls)
    assert in_flight <= CONCURRENCY

    last = max(float(c["at"]) for c in ok_calls)
    latencies = [float(c["at"]) - created[(int(c["chat_id"]), int(c["params"]["user_id"]))] for c in ok_calls]
    rec.measure("requests", REQUESTS)
    rec.measure("queued in (s)", round(queued, 1))
    rec.measure("all approved after (s)", round(last - started, 1))
    rec.measure("mean rate (/s)", round(REQUESTS / (last - started)))
    rec.measure("peak approvals in any 1 s", max_in_window(float(c["at"]) for c in ok_calls))
    rec.measure("peak pending jobs", int(sampler.peak(lambda v: v[0])))
    rec.measure("peak approvals in flight", in_flight)
    rec.measure("approvals during the 3 s pause (after 0.5 s)", len(during))
    rec.measure("latency p50/p99 (s)", f"{percentile(latencies, 0.5):.2f}/{percentile(latencies, 0.99):.2f}")
    rec.measure("wait for the last (s)", round(finished - started, 1))
