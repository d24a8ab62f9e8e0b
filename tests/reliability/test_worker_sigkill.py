"""Scenario 1: TGMS workers SIGKILLed at random moments (seeded) during a 200-group broadcast, each
restarted at once: every group gets exactly one copy, or is reported ambiguous and gets at most one;
no job is left running once its lease is over.

Telegram (the simulator) takes 150 ms per send here, so a kill often lands while a call is in flight:
the case where the outcome is unknown and the row must become 'ambiguous', never be resent.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter

import pytest

from tests.workers.harness import Stack

from .oracle import max_in_window, per_chat
from .results import ScenarioFactory
from .world import StackFactory, managed_chats

SEND = "sendMessage"
GROUPS = 200
SEED = 8
KILLS = 5  # <= the jobs' max_retries (5): see docs/reliability.md on kills beyond it
LEASE = 3.0
RATE = 20
LATENCY = 0.15
ENV = {
    "TGMS_RATE_PER_SECOND": str(RATE),
    "TGMS_GROUP_DELAY_SECONDS": "0",
    "TGMS_GROUP_MESSAGES_PER_MINUTE": "1000",
    "TGMS_JOB_LEASE_SECONDS": str(LEASE),
}


def _counts(stack: Stack, broadcast_id: int) -> Counter[str]:
    rows = stack.sql("SELECT status, count(*) FROM sent_messages WHERE broadcast_id = %s GROUP BY status",
                     (broadcast_id,))  # fmt: skip
    return Counter({str(s): int(n) for s, n in rows})


@pytest.mark.slow
def test_sigkilled_workers_never_send_twice_and_leave_no_job_running(
    db_url: str, make_stack: StackFactory, scenario: ScenarioFactory
) -> None:
    rec = scenario(
        "1", f"Worker SIGKILL during a {GROUPS}-group broadcast",
        injected=f"{KILLS} SIGKILLs of one of 2 `tgms worker` processes at random moments (random.Random({SEED}): "
        f"0.3-1.5 s apart), each restarted at once; sends take {LATENCY * 1000:.0f} ms at the simulator; "
        f"rate {RATE}/s, lease {LEASE:g} s",
        checked="per group, the simulator's successful sendMessage count vs the sent_messages row: 'sent' = "
        "exactly 1 call (with that row's debug code), 'ambiguous' <= 1; no other status; no second call to "
        "any group; broadcast 'done'; afterwards no job 'running' (none past its lease) and none failed",
    )  # fmt: skip
    stack: Stack = make_stack(db_url, env=ENV)
    workers = [stack.start_worker("tgms"), stack.start_worker("tgms")]
    stack.wait_jobs_idle()
    chats = managed_chats(stack, GROUPS)
    stack.ctl.add_fault("hang", method=SEND, seconds=LATENCY, apply=True, times=None)
    text = "Weekly *update*: thanks for being here"
    broadcast_id = stack.broadcast({"text": text, "parse_mode": "Markdown"})

    rng = random.Random(SEED)
    kills: list[tuple[int, int]] = []  # (rows still pending, rows in flight) at each kill
    started = time.monotonic()
    while len(kills) < KILLS:
        time.sleep(rng.uniform(0.3, 1.5))
        counts = _counts(stack, broadcast_id)
        if counts["pending"] == 0:
            break
        i = rng.randrange(len(workers))
        workers[i].send_signal(signal.SIGKILL)
        workers[i].wait(10)
        kills.append((counts["pending"], counts["sending"]))
        workers[i] = stack.start_worker("tgms")

    finished = "SELECT status FROM broadcasts WHERE broadcast_id = %s AND status NOT IN ('pending', 'running')"
    status = stack.wait_for(lambda: stack.scalar(finished, (broadcast_id,)), timeout=120, what="broadcast finished")
    elapsed = time.monotonic() - started
    assert status == "done"
    assert len(kills) == KILLS, f"the broadcast ended after only {len(kills)} kills: {kills}"

    rows = {int(c): (str(s), str(code), m) for c, s, code, m in stack.sql(
        "SELECT chat_id, status, debug_code, telegram_message_id FROM sent_messages WHERE broadcast_id = %s",
        (broadcast_id,))}  # fmt: skip
    assert sorted(rows) == sorted(chats)
    statuses = Counter(s for s, _, _ in rows.values())
    assert set(statuses) <= {"sent", "ambiguous"}, statuses
    # Telegram's side. A killed worker's call in flight had finished at the simulator long before its
    # row was declared ambiguous (a lease later), so the record is complete.
    calls = stack.calls(SEND)
    attempts, delivered = per_chat(calls), per_chat(calls, ok=True)
    for chat, (row_status, _, _) in rows.items():
        assert attempts[chat] <= 1, (chat, row_status, attempts[chat])  # never a second call
        if row_status == "sent":
            assert delivered[chat] == 1, (chat, delivered[chat])
    for call in calls:
        if call["ok"]:
            _, code, message_id = rows[int(call["chat_id"])]
            assert call["params"]["text"] == f"{text}\n\n{code}"
            if rows[int(call["chat_id"])][0] == "sent":
                assert call["result"]["message_id"] == message_id

    # No job outlives its lease: wait for the reaper (a lease + a heartbeat), then nothing runs.
    stack.wait_jobs_idle(timeout=LEASE * 3 + 10)
    assert stack.scalar("SELECT count(*) FROM jobs WHERE status = 'running' AND locked_until < now()") == 0
    jobs = stack.sql("SELECT status, count(*), max(retries) FROM jobs WHERE job_type = 'tgms_send_to_groups' "
                     "GROUP BY status")  # fmt: skip
    assert [(s, n) for s, n, _ in jobs] == [("done", jobs[0][1])], jobs
    reaped = stack.scalar("SELECT coalesce(sum(retries), 0) FROM jobs WHERE job_type = 'tgms_send_to_groups'")

    rec.measure("kills", len(kills))
    rec.measure("kills with a send in flight", sum(1 for _, inflight in kills if inflight))
    rec.measure("sent", statuses["sent"])
    rec.measure("ambiguous", statuses["ambiguous"])
    rec.measure("ambiguous delivered", sum(1 for c, (s, _, _) in rows.items() if s == "ambiguous" and delivered[c]))
    rec.measure("duplicates", sum(1 for n in attempts.values() if n > 1))
    rec.measure("sender jobs re-run after a lease", int(reaped))
    # Measured at the simulator, so with the jitter between a token's grant and the call's arrival; the
    # bot bucket's capacity is 2 (workers/bots.py: bot_burst), i.e. at most RATE + 1 grants per second.
    rec.measure(f"peak sends in any 1 s (rate {RATE}/s, burst 2)", max_in_window(float(c["at"]) for c in calls))
    rec.measure("broadcast took (s)", round(elapsed, 1))
