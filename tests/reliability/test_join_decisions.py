"""Scenarios 18a-18b: an operator's bulk decisions on a raid's held requests.

18a: TGMS workers SIGKILLed at random moments (seeded) while they decline the held requests, each
restarted at once. Telegram (the simulator) takes 100 ms per decline, so a kill often lands while
calls are in flight: those requests must become 'ambiguous' and never be called again; every other
one is declined exactly once. Then the operator decides the ambiguous ones again.

18b: Telegram refuses calls during a bulk approval (429s, the Bot API's own 500s, a gateway's 502
page): refused calls are made again, an answer that may hide an effect (the gateway page) is
ambiguous, every request ends approved exactly once.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from tests.workers.harness import REPO, Stack

from .oracle import per_request
from .results import ScenarioFactory
from .world import StackFactory, managed_chats

APPROVE, DECLINE = "approveChatJoinRequest", "declineChatJoinRequest"
GROUPS = 3
PER_GROUP = 100
THRESHOLD = 5
SEED = 18
KILLS = 4
LEASE = 3.0
RATE = 15
LATENCY = 0.1
ENV = {"TGMS_RATE_PER_SECOND": str(RATE), "TGMS_JOB_LEASE_SECONDS": str(LEASE)}


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tgms_tui.commands.cli", *args], cwd=REPO, env=stack.env(),
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def _raid(stack: Stack, per_group: int) -> tuple[list[int], set[tuple[int, int]]]:
    """GROUPS groups at THRESHOLD requests a minute, `per_group` requests into each: all but the
    first THRESHOLD of each group's minute held. Returns the chats and the held (chat, user) pairs."""
    chats = managed_chats(stack, GROUPS, raid_per_minute=THRESHOLD)
    for chat in chats:
        for _ in range(per_group):
            stack.sim.state.create_join_request(chat, None)
    total = GROUPS * per_group
    stack.wait_for(lambda: stack.scalar("SELECT count(*) FROM join_requests WHERE status IN ('approved', 'held')")
                   == total, timeout=90, what=f"{total} requests approved or held")  # fmt: skip
    stack.wait_jobs_idle("tgms_process_join_request", timeout=60)
    return chats, {k for k, s in _statuses(stack).items() if s == "held"}


def _statuses(stack: Stack) -> dict[tuple[int, int], str]:
    rows = stack.sql("SELECT chat_id, user_id, status FROM join_requests WHERE status <> 'approved' OR decided_by "
                     "IS NOT NULL")  # fmt: skip
    return {(int(c), int(u)): str(s) for c, u, s in rows}


@pytest.mark.slow
def test_workers_killed_during_a_bulk_decline_never_decide_a_request_twice(
    db_url: str, make_stack: StackFactory, scenario: ScenarioFactory
) -> None:
    rec = scenario(
        "18a", f"Worker SIGKILL during a bulk decline of {GROUPS * (PER_GROUP - THRESHOLD)} held requests",
        injected=f"a raid of {GROUPS}x{PER_GROUP} requests at {THRESHOLD}/min per group; `tgms join-requests decline "
        f"--group` for each group; {KILLS} SIGKILLs of one of 2 `tgms worker` processes at random moments "
        f"(random.Random({SEED}): 0.3-1.2 s apart), each restarted at once; declines take {LATENCY * 1000:.0f} ms "
        f"at the simulator; rate {RATE}/s, lease {LEASE:g} s; then the ambiguous ones declined again",
        checked="per request, the simulator's declineChatJoinRequest calls vs the join_requests row: 'declined' = "
        "exactly 1 successful call; 'ambiguous' <= 1 call and never a second one by the job; no other status; "
        "decided again, an ambiguous request becomes 'expired' (Telegram no longer has it) or 'declined' (its "
        "call never reached Telegram): in the end every held request got exactly one successful decline and "
        "none waits at Telegram; no job left running or failed",
    )  # fmt: skip
    stack: Stack = make_stack(db_url, env=ENV)
    workers = [stack.start_worker("tgms"), stack.start_worker("tgms")]
    chats, held = _raid(stack, PER_GROUP)
    stack.ctl.add_fault("hang", method=DECLINE, seconds=LATENCY, apply=True, times=None)
    for chat in chats:
        done = _cli(stack, "join-requests", "decline", "--group", str(chat))
        assert done.returncode == 0, done.stdout + done.stderr

    def count(status: str) -> int:
        return int(stack.scalar("SELECT count(*) FROM join_requests WHERE status = %s", (status,)))

    rng = random.Random(SEED)
    kills: list[tuple[int, int]] = []  # (held left, processing) at each kill
    while len(kills) < KILLS:
        time.sleep(rng.uniform(0.3, 1.2))
        left, inflight = count("held"), count("processing")
        if left == 0:
            break
        i = rng.randrange(len(workers))
        workers[i].send_signal(signal.SIGKILL)
        workers[i].wait(10)
        kills.append((left, inflight))
        workers[i] = stack.start_worker("tgms")
    stack.wait_for(lambda: count("held") + count("processing") == 0, timeout=120, what="every held request decided")
    stack.wait_jobs_idle("tgms_decide_join_requests", timeout=LEASE * 3 + 30)
    assert len(kills) == KILLS, f"the decline ended after only {len(kills)} kills: {kills}"

    statuses = {k: s for k, s in _statuses(stack).items() if k in held}
    assert set(statuses) == held
    counted = Counter(statuses.values())
    assert set(counted) <= {"declined", "ambiguous"}, counted
    calls = stack.calls(DECLINE)
    attempts, done_ok = per_request(calls), per_request(calls, ok=True)
    for key, status in statuses.items():
        assert attempts[key] <= 1, (key, status, attempts[key])  # never a second call
        if status == "declined":
            assert done_ok[key] == 1, (key, done_ok[key])
    ambiguous_landed = sum(1 for k, s in statuses.items() if s == "ambiguous" and done_ok[k])

    # The operator decides the ambiguous ones again: Telegram tells which still waited.
    ids = [str(r[0]) for r in stack.sql("SELECT request_id FROM join_requests WHERE status = 'ambiguous'")]
    if ids:
        again = _cli(stack, "join-requests", "decline", *ids)
        assert again.returncode == 0, again.stdout + again.stderr
        listed = json.loads(again.stdout)["request_ids"]
        assert len(listed) == len(ids)
    stack.wait_for(lambda: count("ambiguous") + count("processing") == 0, what="ambiguous ones decided")
    stack.wait_jobs_idle("tgms_decide_join_requests", timeout=30)
    final = {k: s for k, s in _statuses(stack).items() if k in held}
    assert set(final.values()) <= {"declined", "expired"}, Counter(final.values())
    done_ok = per_request(stack.calls(DECLINE), ok=True)
    assert {k: done_ok[k] for k in held} == dict.fromkeys(held, 1)
    with stack.sim.state.lock:
        waiting = sum(len(stack.sim.state.chats[c].join_requests) for c in chats)
    assert waiting == 0
    assert stack.scalar("SELECT count(*) FROM jobs WHERE status IN ('running', 'failed')") == 0

    rec.measure("held", len(held))
    rec.measure("kills", len(kills))
    rec.measure("kills with calls in flight", sum(1 for _, inflight in kills if inflight))
    rec.measure("declined", counted["declined"])
    rec.measure("ambiguous", counted["ambiguous"])
    rec.measure("ambiguous that Telegram had carried out", ambiguous_landed)
    rec.measure("second calls by a job", sum(1 for k in held if attempts[k] > 1))


@pytest.mark.slow
def test_a_bulk_approval_through_429s_server_errors_and_a_gateway_page(
    db_url: str, make_stack: StackFactory, scenario: ScenarioFactory
) -> None:
    floods, errors = 3, 3
    rec = scenario(
        "18b", "Telegram refusing calls during a bulk approval",
        injected=f"a raid of {GROUPS}x{PER_GROUP // 2} requests at {THRESHOLD}/min per group, the held ones approved "
        "with one "
        f"`tgms join-requests approve ID...`; meanwhile {floods} x 429 (retry_after 1), {errors} x the Bot "
        "API's own 500 and 1 x a gateway's 502 page on approveChatJoinRequest; rate "
        f"{RATE}/s",
        checked="the 429s pause the bot's shared bucket and their requests are approved later; the 500s are "
        "tried again; the gateway page (it may hide an effect) leaves its "
        "request 'ambiguous', approved when decided again; in the end every request approved by exactly one "
        "successful call, none failed",
    )  # fmt: skip
    stack: Stack = make_stack(db_url, env=ENV)
    stack.start_worker("tgms")
    _chats, held = _raid(stack, PER_GROUP // 2)
    ctl = stack.ctl
    ctl.add_fault("flood", method=APPROVE, times=floods, retry_after=1)
    ctl.add_fault("error", method=APPROVE, times=errors, error_code=500, description="Internal Server Error")
    ctl.add_fault("status", method=APPROVE, times=1, status=502)
    ids = [str(r[0]) for r in stack.sql("SELECT request_id FROM join_requests WHERE status = 'held'")]
    started = time.time()
    done = _cli(stack, "join-requests", "approve", *ids)
    assert done.returncode == 0, done.stdout + done.stderr

    def count(status: str) -> int:
        return int(stack.scalar("SELECT count(*) FROM join_requests WHERE status = %s", (status,)))

    stack.wait_for(lambda: count("held") + count("processing") == 0, timeout=120, what="approvals done")
    stack.wait_jobs_idle("tgms_decide_join_requests", timeout=30)
    first = Counter(s for k, s in _statuses(stack).items() if k in held)
    assert first == Counter({"approved": len(held) - 1, "ambiguous": 1}), first
    ambiguous = [str(r[0]) for r in stack.sql("SELECT request_id FROM join_requests WHERE status = 'ambiguous'")]
    again = _cli(stack, "join-requests", "approve", *ambiguous)
    assert again.returncode == 0, again.stdout + again.stderr
    stack.wait_for(lambda: count("ambiguous") + count("processing") == 0, what="the ambiguous one decided")
    stack.wait_jobs_idle("tgms_decide_join_requests", timeout=30)

    final = Counter(s for k, s in _statuses(stack).items() if k in held)
    assert final == Counter({"approved": len(held)}), final
    calls = stack.calls(APPROVE)
    done_ok = per_request(calls, ok=True)
    assert {k: done_ok[k] for k in held} == dict.fromkeys(held, 1)
    refused = [c for c in calls if not c["ok"] and c["at"] >= started]
    assert Counter(c.get("error_code") for c in refused) == Counter({429: floods, 500: errors, 502: 1})
    # Each 429 paused the bot's shared bucket (every process waits it out); the longest silence after one.
    paused = stack.scalar("SELECT paused_until IS NOT NULL FROM rate_buckets WHERE key = %s",
                          (f"bot:{stack.tgms_bot_id}",))  # fmt: skip
    assert paused
    ok_times = sorted(c["at"] for c in calls if c["ok"] and c["at"] >= started)
    gaps = [min((t - f["at"] for t in ok_times if t > f["at"] + 0.05), default=0.0)
            for f in refused if f.get("error_code") == 429]  # fmt: skip
    assert stack.scalar("SELECT count(*) FROM jobs WHERE status IN ('running', 'failed')") == 0

    rec.measure("requests", len(held))
    rec.measure("refused calls", len(refused))
    rec.measure("longest silence after a 429 (s)", round(max(gaps), 2))
    rec.measure("ambiguous (gateway page)", first["ambiguous"])
    rec.measure("approved once", sum(1 for k in held if done_ok[k] == 1))
    rec.measure("failed", final["failed"])
