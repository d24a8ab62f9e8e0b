"""Scenarios 2 and 2b: PostgreSQL stopped (2: fast shutdown; 2b: crashed, immediate shutdown) for 5 s
and started again while join requests arrive at 50/s.

The webhook answers 503 (with Retry-After) while it cannot store an update, Telegram (the simulator)
redelivers, and the worker processes — never restarted — reconnect and approve everything: each
request exactly once. The crash also loses whatever queue bookkeeping had not reached the disk yet
(the runner's claims and completions do not wait for their WAL flush): those jobs come back through
their leases and re-run harmlessly. A dedicated server is used: the session's server is shared by
other tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from telegram_sim.config import SimConfig
from tests.pg_control import DedicatedPostgres
from tests.workers.harness import WEBHOOK_SECRET, Stack

from .oracle import per_request
from .results import ScenarioFactory
from .world import StackFactory, managed_chats

APPROVE = "approveChatJoinRequest"
RATE = 50.0
BEFORE, OUTAGE, AFTER = 3.0, 5.0, 3.0
GROUPS = 10
PROBE_ID = 10**12  # an update sent by the test itself during the outage: refused, so never stored


@pytest.fixture
def dedicated_pg() -> Iterator[DedicatedPostgres]:
    """Set up before `make_stack`, so torn down after the processes using it have stopped."""
    with DedicatedPostgres() as pg:
        yield pg


def _drive(stack: Stack, chats: list[int], seconds: float, made: list[tuple[int, int, float]]) -> None:
    """Join requests at a steady RATE on an absolute schedule (no drift)."""
    state = stack.sim.state
    start = time.perf_counter()
    for i in range(int(RATE * seconds)):
        delay = start + i / RATE - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        chat = chats[i % len(chats)]
        made.append((chat, state.create_join_request(chat, None).user_id, time.time()))


SHUTDOWNS = {
    "fast": ("2", "PostgreSQL restart under load", "stopped (fast shutdown: connections cut)"),
    "immediate": ("2b", "PostgreSQL crash under load",
                  "crashed (immediate shutdown: no checkpoint, WAL not yet flushed is lost; crash recovery on start)"),
}  # fmt: skip
CRASH_LEASE_SECONDS = "5"  # jobs whose completion the crash lost come back after their lease


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(SHUTDOWNS))
def test_postgres_restart_under_join_request_load(
    mode: str, dedicated_pg: DedicatedPostgres, make_stack: StackFactory, scenario: ScenarioFactory
) -> None:
    key, title, how = SHUTDOWNS[mode]
    rec = scenario(
        key, title,
        injected=f"join requests at {RATE:g}/s for {BEFORE + OUTAGE + AFTER:g} s (10 groups); after {BEFORE:g} s "
        f"PostgreSQL (a dedicated server) is {how} for {OUTAGE:g} s, then started; webhook and worker "
        f"processes keep running" + (f" (job lease {CRASH_LEASE_SECONDS} s)" if mode == "immediate" else ""),
        checked="webhook answers only 200 or 503 (+Retry-After), 503s seen during the outage; every request "
        "has exactly 1 successful approval at the simulator and 1 approved join_requests row; one job per "
        "update (redeliveries deduplicated), all done; the same worker processes (no restart) resume"
        + ("; no join job has a retry counted (a lost connection is not the job's fault)" if mode == "fast" else ""),
    )  # fmt: skip
    pg = dedicated_pg
    config = SimConfig(enforce_flood_limits=False, webhook_retry_after_max=0.5, webhook_retry_max=0.5)
    stack: Stack = make_stack(pg.url, sim_config=config)
    webhook_proc = stack.procs[0][1]
    lease = {"TGMS_JOB_LEASE_SECONDS": CRASH_LEASE_SECONDS} if mode == "immediate" else {}
    workers = [stack.start_worker("tgms", **lease), stack.start_worker("main", **lease)]
    stack.wait_jobs_idle()
    chats = managed_chats(stack, GROUPS)

    made: list[tuple[int, int, float]] = []
    driver = threading.Thread(target=_drive, args=(stack, chats, BEFORE + OUTAGE + AFTER, made), daemon=True)
    driver.start()
    time.sleep(BEFORE)
    pg.stop(mode)
    down_at = time.time()
    time.sleep(OUTAGE / 2)
    probe = httpx.post(f"{stack.webhook_url}/api/webhook", json={"update_id": PROBE_ID, "message": {}},
                       headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}, timeout=30)  # fmt: skip
    time.sleep(max(0.0, down_at + OUTAGE - time.time()))
    pg.start()
    up_at = time.time()
    driver.join(60)
    assert not driver.is_alive()
    assert probe.status_code == 503 and probe.headers["retry-after"] == "5", (probe.status_code, probe.headers)

    n = len(made)
    stack.wait_for(lambda: stack.scalar("SELECT count(*) FROM join_requests WHERE status = 'approved'") >= n,
                   timeout=90, interval=0.2, what="every join request approved")  # fmt: skip
    stack.wait_jobs_idle("tgms_process_join_request", timeout=60)

    # The processes rode it out: none exited or was restarted.
    assert webhook_proc.poll() is None and all(w.poll() is None for w in workers)
    attempts = [a for a in stack.sim.dispatcher.recent_attempts(stack.tgms_bot_id, limit=100_000)
                if a["kind"] == "chat_join_request"]  # fmt: skip
    assert {a["status"] for a in attempts} <= {200, 503}, {(a["status"], a["error"]) for a in attempts}
    refused = [a for a in attempts if a["status"] == 503]
    assert refused and all(down_at - 1 <= a["at"] <= up_at + 10 for a in refused)
    delivered = {a["update_id"] for a in attempts if a["ok"]}
    assert len(delivered) == n

    approvals = stack.calls(APPROVE)
    wanted = {(c, u): 1 for c, u, _ in made}
    assert per_request(approvals, ok=True) == wanted
    assert sorted(stack.sql("SELECT chat_id, user_id FROM join_requests WHERE status = 'approved'")) == sorted(wanted)
    assert stack.scalar("SELECT count(*) FROM join_requests") == n
    jobs = stack.sql("SELECT status, count(*) FROM jobs WHERE job_type = 'tgms_process_join_request' GROUP BY status")
    assert jobs == [("done", n)]
    stored = "SELECT count(*) FROM webhook_updates WHERE bot = 'tgms' AND update_type = 'chat_join_request'"
    assert stack.scalar(stored) == n
    assert stack.scalar("SELECT count(*) FROM webhook_updates WHERE update_id = %s", (PROBE_ID,)) == 0
    # Both workers heartbeat again after the restart.
    assert stack.scalar("SELECT count(*) FROM bot_health WHERE pid = ANY(%s) AND status = 'running' "
                        "AND updated_at > to_timestamp(%s)", ([w.pid for w in workers], up_at)) == 2  # fmt: skip

    ok = [c for c in approvals if c["ok"]]
    after_restart = [float(c["at"]) for c in ok if float(c["at"]) > up_at]
    created = {(c, u): t for c, u, t in made}
    waited = [float(c["at"]) - created[(int(c["chat_id"]), int(c["params"]["user_id"]))] for c in ok]
    rec.measure("requests", n)
    rec.measure("outage (s)", round(up_at - down_at, 1))
    rec.measure("503 answers", len(refused))
    rec.measure("redelivered updates", len({a["update_id"] for a in refused}))
    rec.measure("first approval after restart (s)", round(min(after_restart) - up_at, 1) if after_restart else "-")
    rec.measure("all approved after restart (s)", round(max(float(c["at"]) for c in ok) - up_at, 1))
    rec.measure("longest wait (s)", round(max(waited), 1))
    rec.measure("repeated approve attempts (refused by Telegram)", sum(1 for c in approvals if not c["ok"]))
    retried = stack.scalar("SELECT count(*) FROM jobs WHERE job_type = 'tgms_process_join_request' AND retries > 0")
    rec.measure("join jobs with a retry counted", retried)
    if mode == "fast":
        # A lost connection is not the job's fault: no retry is counted for it (the crash is different:
        # completions it lost come back through their leases, and a lapsed lease counts).
        assert retried == 0, stack.queue_state()
