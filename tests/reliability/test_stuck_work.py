"""Scenarios 8a-8d: stuck work never holds a job for ever.

8a runs the real pipeline (an approval Telegram never answers); 8b-8d run real worker processes with
test handlers that hang or block (tests/worker_harness.py), since no real handler does that on purpose.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.support import poll_until
from tests.workers.harness import Stack

from .results import ScenarioFactory
from .world import StackFactory, add_groups, tgms_chats

ROOT = Path(__file__).resolve().parents[2]
APPROVE = "approveChatJoinRequest"
TEST_RUNS = "CREATE TABLE IF NOT EXISTS test_runs (job_id bigint, pid int, phase text, at timestamptz DEFAULT now())"


class Db:
    """Plain synchronous access to the scenario's database."""

    def __init__(self, url: str) -> None:
        self.url = url

    def rows(self, query: str, params: Any = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def value(self, query: str, params: Any = ()) -> Any:
        rows = self.rows(query, params)
        return rows[0][0] if rows else None

    def enqueue(self, job_type: str, payload: dict[str, Any] | None = None, max_retries: int = 5) -> int:
        self.rows(TEST_RUNS)
        return int(self.value("INSERT INTO jobs (job_type, payload, max_retries) VALUES (%s, %s, %s) RETURNING job_id",
                              (job_type, Jsonb(payload or {}), max_retries)))  # fmt: skip

    def status(self, job_id: int) -> tuple[str, int, str | None]:
        row = self.rows("SELECT status, retries, last_error FROM jobs WHERE job_id = %s", (job_id,))[0]
        return str(row[0]), int(row[1]), row[2]

    def steps(self, job_id: int, phase: str | None = None) -> list[int]:
        """The worker pid of each recorded step (of `phase`) of the job, in order."""
        return [int(r[0]) for r in self.rows(
            "SELECT pid FROM test_runs WHERE job_id = %s AND (%s::text IS NULL OR phase = %s) ORDER BY at",
            (job_id, phase, phase))]  # fmt: skip

    def wait(self, check: Any, what: str, timeout: float = 30.0) -> Any:
        return poll_until(check, timeout=timeout, what=what, interval=0.05)


def harness(db_url: str, lease: float, **env: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.worker_harness", db_url, "tgms", str(lease), "2"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, **env})  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def stop(*procs: subprocess.Popen[str]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.mark.slow
def test_an_approval_telegram_never_answers_is_cut_by_its_time_limit(
    db_url: str, make_stack: StackFactory, scenario: ScenarioFactory
) -> None:
    limit, hang = 2, 60
    rec = scenario(
        "8a", "Stuck work: an approval Telegram never answers",
        injected=f"the simulator holds the first 2 approveChatJoinRequest calls of a join request for {hang} s (no "
        f"answer; the Bot API client would wait 30 s); TGMS_JOB_TIMEOUTS=tgms_process_join_request={limit}",
        checked=f"each hung attempt is cancelled at the {limit} s time limit and counts a retry (error 'timed out "
        f"after {limit} s'); the third attempt approves: one approved join_requests row, one successful approval "
        "at the simulator, job done",
    )  # fmt: skip
    stack: Stack = make_stack(db_url, env={"TGMS_JOB_TIMEOUTS": f"tgms_process_join_request={limit}"})
    chat = tgms_chats(stack, 1)[0]
    add_groups(stack, [chat])
    stack.ctl.add_fault("hang", method=APPROVE, chat_id=chat["id"], seconds=hang, apply=False, times=2)
    stack.start_worker("tgms")
    started = time.monotonic()
    user = stack.ctl.join_request(chat["id"])["user_id"]
    approved = "SELECT status FROM join_requests WHERE chat_id = %s AND user_id = %s AND status = 'approved'"
    stack.wait_for(lambda: stack.scalar(approved, (chat["id"], user)), timeout=40, what="request approved")
    took = time.monotonic() - started
    stack.wait_jobs_idle("tgms_process_join_request")
    jobs = stack.sql("SELECT status, retries, last_error FROM jobs WHERE job_type = 'tgms_process_join_request'")
    assert len(jobs) == 1
    status, retries, error = jobs[0]
    assert (status, retries) == ("done", 2) and str(error).startswith(f"timed out after {limit} s")
    assert len(stack.calls(APPROVE, chat_id=chat["id"], ok=True)) == 1
    rec.measure("attempts cut by the time limit", retries)
    rec.measure("approved after (s)", round(took, 1))


@pytest.mark.slow
def test_a_hanging_handler_ends_failed_after_its_retries(db_url: str, scenario: ScenarioFactory) -> None:
    rec = scenario(
        "8b", "Stuck work: a handler that hangs",
        injected="a job whose handler awaits for ever (max_retries 2) in a real worker process; its job type's time "
        "limit is 1 s (TGMS_JOB_TIMEOUTS)",
        checked="each attempt is cancelled at the limit (the handler sees the cancellation), counts a retry with "
        "backoff, and the job ends 'failed' with 'timed out after 1 s' after 3 attempts; no handler left running",
    )  # fmt: skip
    db = Db(db_url)
    job = db.enqueue("tgms_test_hang", max_retries=2)
    started = time.monotonic()
    worker = harness(db_url, 30.0, TGMS_JOB_TIMEOUTS="tgms_test_hang=1")
    try:
        db.wait(lambda: db.status(job)[0] == "failed", "job failed")
        took = time.monotonic() - started
    finally:
        stop(worker)
    status, retries, error = db.status(job)
    assert (status, retries) == ("failed", 3) and str(error).startswith("timed out after 1 s")
    assert len(db.steps(job, "start")) == len(db.steps(job, "cancelled")) == 3
    rec.measure("attempts", len(db.steps(job, "start")))
    rec.measure("failed after (s)", round(took, 1))


@pytest.mark.slow
def test_a_handler_blocking_the_event_loop(db_url: str, scenario: ScenarioFactory) -> None:
    rec = scenario(
        "8c", "Stuck work: a handler that blocks the event loop",
        injected="a job whose handler calls time.sleep(4) (max_retries 1), 2 worker processes (lease 1.5 s, "
        "watchdog report after 0.5 s); no-op jobs enqueued meanwhile; then a third worker whose loop a job "
        "blocks for good (exit threshold 2 s)",
        checked="bot_health shows the stalled worker ('stalled', the job and the function blocking); the lease "
        "lapses and the other worker takes the job (and blocks), each lapse a retry: 'failed' after 2 runs; the "
        "no-op jobs run meanwhile; the worker blocked for good exits with status 70 and its job is reaped",
    )  # fmt: skip
    db = Db(db_url)
    env = {"HARNESS_STALL_REPORT": "0.5", "HARNESS_STALL_EXIT": "60"}
    blocker = db.enqueue("tgms_test_block", {"seconds": 4}, max_retries=1)
    started = time.monotonic()
    a, b = harness(db_url, 1.5, **env), harness(db_url, 1.5, **env)
    try:
        db.wait(lambda: db.steps(blocker, "start"), "the blocking job started")
        first = db.steps(blocker, "start")[0]
        noops = [db.enqueue("tgms_test_noop") for _ in range(5)]
        reported = db.wait(lambda: db.value("SELECT last_error FROM bot_health WHERE pid = %s AND status = 'stalled'",
                                            (first,)), "stall reported")  # fmt: skip
        db.wait(lambda: db.status(blocker)[0] == "failed", "blocking job failed", timeout=40)
        failed_after = time.monotonic() - started
        db.wait(lambda: all(db.status(j)[0] == "done" for j in noops), "no-op jobs done")
        assert a.poll() is None and b.poll() is None
    finally:
        stop(a, b)
    assert f"by job {blocker} (tgms_test_block)" in reported and "in block_handler" in reported
    status, retries, error = db.status(blocker)
    assert (status, retries) == ("failed", 2) and str(error).startswith("lease expired")
    assert sorted(db.steps(blocker, "start")) == sorted([a.pid, b.pid])
    longest = float(db.value("SELECT max(loop_stall_seconds) FROM bot_health"))

    forever = db.enqueue("tgms_test_block", {"seconds": 600}, max_retries=0)
    stuck = harness(db_url, 1.5, HARNESS_STALL_REPORT="0.5", HARNESS_STALL_EXIT="2")
    try:
        db.wait(lambda: db.steps(forever, "start"), "the second blocking job started")
        exit_code = stuck.wait(30)
        rescuer = harness(db_url, 1.5)
        try:
            db.wait(lambda: db.status(forever)[0] == "failed", "reaped after the exit")
        finally:
            stop(rescuer)
    finally:
        if stuck.poll() is None:
            stuck.kill()
            stuck.wait(5)
    assert exit_code == 70
    rec.measure("runs of the blocking job", len(db.steps(blocker, "start")))
    rec.measure("failed after (s)", round(failed_after, 1))
    rec.measure("longest stall reported (s)", round(longest, 1))
    rec.measure("no-op jobs run meanwhile", len(noops))
    rec.measure("exit status when blocked for good", exit_code)


@pytest.mark.slow
def test_lease_lost_and_operator_cancel_stop_the_handler(db_url: str, scenario: ScenarioFactory) -> None:
    rec = scenario(
        "8d", "Stuck work: lease lost, cancel of a running job",
        injected="a hanging handler in a real worker (lease 30 s): (1) its job is taken over under it (locked by "
        "another worker, as after a reap and a new claim); (2) another running job is cancelled with `tgms jobs "
        "cancel ID`",
        checked="(1) the heartbeat finds the lease gone and cancels the handler in that worker; the new holder's "
        "row is untouched; (2) the handler is cancelled, the job stays 'cancelled' and never runs again; "
        "the worker keeps going",
    )  # fmt: skip
    db = Db(db_url)
    taken = db.enqueue("tgms_test_hang")
    cancelled = db.enqueue("tgms_test_hang")
    worker = harness(db_url, 30.0)
    try:
        db.wait(lambda: db.steps(taken, "start") and db.steps(cancelled, "start"), "both jobs started")
        moved = time.monotonic()
        db.rows("UPDATE jobs SET locked_by = 'another-worker', locked_until = now() + interval '1 hour' "
                "WHERE job_id = %s", (taken,))  # fmt: skip
        db.wait(lambda: db.steps(taken, "cancelled"), "handler of the lost job cancelled")
        lost_after = time.monotonic() - moved
        asked = time.monotonic()
        env = {**os.environ, "DATABASE_URL": db_url}
        cli = subprocess.run([sys.executable, "-m", "tgms_tui.commands.cli", "jobs", "cancel", str(cancelled)],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
        answered = time.monotonic()
        assert cli.returncode == 0, cli.stdout + cli.stderr
        db.wait(lambda: db.steps(cancelled, "cancelled"), "handler of the cancelled job stopped")
        stopped_after = time.monotonic() - answered
        cli_took = answered - asked
        time.sleep(1.5)
        noop = db.enqueue("tgms_test_noop")
        db.wait(lambda: db.status(noop)[0] == "done", "the worker goes on")
    finally:
        stop(worker)
    assert db.status(taken)[:2] == ("running", 0)
    assert db.value("SELECT locked_by FROM jobs WHERE job_id = %s", (taken,)) == "another-worker"
    assert db.status(cancelled)[:2] == ("cancelled", 0)
    assert db.steps(cancelled, "start") == [worker.pid]
    rec.measure("lease lost → handler cancelled (s)", round(lost_after, 2))
    rec.measure("`tgms jobs cancel` took (s)", round(cli_took, 2))
    rec.measure("cancel answered → handler stopped (s)", round(stopped_after, 2))
