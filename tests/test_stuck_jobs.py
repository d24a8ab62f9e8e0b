"""Stuck work never holds a job for ever: time limits, lease loss, operator cancel, the loop watchdog.

The scenarios with a hanging or blocking handler run real worker processes (tests/worker_harness.py);
the notification path of a cancel and the "a late completion never overwrites 'cancelled'" rule are
checked on an in-process worker whose heartbeat is too slow to be the one noticing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from tests.support import wait_until
from tests.test_runner import job_statuses, make_worker, running
from tgms_tui.backend import queue
from tgms_tui.backend.config import ConfigError, load_settings
from workers.runner import JobContext, time_left, uninterruptible

ROOT = Path(__file__).resolve().parents[1]
TEST_RUNS = "CREATE TABLE IF NOT EXISTS test_runs (job_id bigint, pid int, phase text, at timestamptz DEFAULT now())"


def start_harness(db_url: str, lease: float = 30.0, **env: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.worker_harness", db_url, "tgms", str(lease), "2"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **env},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def stop(*procs: subprocess.Popen[str]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def runs(pool: AsyncConnectionPool, job_id: int | None, phase: str | None = None) -> list[tuple[int, str]]:
    """(pid, phase) of each recorded step of the job, in order."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT pid, phase FROM test_runs WHERE job_id = %s AND (%s::text IS NULL OR phase = %s) ORDER BY at",
            (job_id, phase, phase),
        )
        return [(int(p), str(ph)) for p, ph in await cur.fetchall()]


async def has_runs(pool: AsyncConnectionPool, job_id: int | None, phase: str, n: int) -> bool:
    return len(await runs(pool, job_id, phase)) >= n


async def status_is(pool: AsyncConnectionPool, job_id: int | None, status: str) -> bool:
    return (await job_statuses(pool)).get(job_id or 0, ("?",))[0] == status


async def enqueue(pool: AsyncConnectionPool, job_type: str, payload: dict[str, Any] | None = None, **kw: Any) -> int:
    async with pool.connection() as conn:
        await conn.execute(TEST_RUNS)
        job_id = await queue.enqueue(conn, job_type, payload or {}, **kw)
    assert job_id is not None
    return job_id


# ---------------------------------------------------------------------------- time limits
async def test_hanging_handler_times_out_counts_retries_and_ends_failed(pool: AsyncConnectionPool, db_url: str) -> None:
    job_id = await enqueue(pool, "tgms_test_hang", max_retries=2)
    worker = start_harness(db_url, TGMS_JOB_TIMEOUTS="tgms_test_hang=1")
    try:
        await wait_until(lambda: status_is(pool, job_id, "failed"), timeout=30)
    finally:
        stop(worker)
    status, retries, error = (await job_statuses(pool))[job_id]
    assert (status, retries) == ("failed", 3)
    assert error is not None and error.startswith("timed out after 1 s")
    steps = await runs(pool, job_id)
    assert [phase for _, phase in steps] == ["start", "cancelled"] * 3  # each attempt cancelled, none left


async def test_time_left_is_the_handlers_remaining_limit(pool: AsyncConnectionPool, db_url: str) -> None:
    seen: list[float | None] = []

    async def handler(ctx: JobContext, job: queue.Job) -> None:
        seen.append(time_left())

    job_id = await enqueue(pool, "tgms_a")
    worker = make_worker(db_url, {"tgms_a": handler}, time_limits={"tgms_a": 42.0})
    async with running(worker):
        await wait_until(lambda: status_is(pool, job_id, "done"))
    assert time_left() is None  # outside a handler
    assert seen and seen[0] is not None and 40.0 < seen[0] <= 42.0


def test_job_timeouts_setting_is_validated_in_one_line() -> None:
    settings = load_settings({"TGMS_JOB_TIMEOUTS": "tgms_send_to_groups=1800, tgms_process_join_request=20"}, None)
    assert settings.job_timeouts == {"tgms_send_to_groups": 1800.0, "tgms_process_join_request": 20.0}
    for raw, problem in [
        ("tgms_send_to_groups", "expected job_type=seconds"),
        ("tgms_send_to_groups=soon", "expected seconds as a number"),
        ("tgms_send_to_groups=0.5", "at least 1 second"),
        ("tgms_send_to_groups=nan", "at least 1 second"),
        ("a=5,a=6", "a is given twice"),
        ("Bad Type=5", "expected job_type=seconds"),
    ]:
        with pytest.raises(ConfigError, match=problem) as caught:
            load_settings({"TGMS_JOB_TIMEOUTS": raw}, None)
        assert str(caught.value).startswith("TGMS_JOB_TIMEOUTS: ") and "\n" not in str(caught.value)


def test_a_worker_refuses_a_time_limit_for_an_unknown_job_type(tmp_path: Path) -> None:
    env = {**os.environ, "TGMS_JOB_TIMEOUTS": "tgms_send_to_grups=60", "TGMS_DATA_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "tgms_tui.commands.cli", "worker", "tgms"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "TGMS_JOB_TIMEOUTS: unknown job type 'tgms_send_to_grups'" in lines[0]
    assert list(tmp_path.iterdir()) == [] and "Traceback" not in done.stderr  # the database was not touched


# ---------------------------------------------------------------------------- lease lost
async def test_a_worker_that_lost_the_lease_cancels_the_handler(pool: AsyncConnectionPool, db_url: str) -> None:
    """The job is re-queued under the worker (as a reaper does) and taken by another worker: the first
    worker's heartbeat finds its lease gone and cancels its handler, which would otherwise run on."""
    job_id = await enqueue(pool, "tgms_test_hang")
    worker = start_harness(db_url, lease=3.0)
    try:
        await wait_until(lambda: has_runs(pool, job_id, "start", 1))
        async with pool.connection() as conn:
            await conn.execute(
                "UPDATE jobs SET locked_by = 'another-worker', locked_until = now() + interval '1 hour'"
                " WHERE job_id = %s",
                (job_id,),
            )
        await wait_until(lambda: has_runs(pool, job_id, "cancelled", 1), timeout=10)
        assert worker.poll() is None  # the worker goes on
    finally:
        stop(worker)
    assert [pid for pid, _ in await runs(pool, job_id, "cancelled")] == [worker.pid]
    assert (await job_statuses(pool))[job_id][:2] == ("running", 0)  # the other worker's outcome is untouched


# ---------------------------------------------------------------------------- cancelling a running job
def tgms(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": db_url}
    return subprocess.run(
        [sys.executable, "-m", "tgms_tui.commands.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )


async def test_cancel_a_running_job_from_the_cli_stops_it_at_once(pool: AsyncConnectionPool, db_url: str) -> None:
    job_id = await enqueue(pool, "tgms_test_hang")
    worker = start_harness(db_url, lease=60.0)
    try:
        await wait_until(lambda: has_runs(pool, job_id, "start", 1))
        listed = tgms(db_url, "jobs", "list", "--status", "running", "--json")
        assert listed.returncode == 0 and f'"job_id": {job_id}' in listed.stdout
        asked = time.monotonic()
        done = tgms(db_url, "jobs", "cancel", str(job_id))
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.strip() == f"job {job_id} cancelled (its worker stops the handler now)"
        await wait_until(lambda: has_runs(pool, job_id, "cancelled", 1), timeout=10)
        stopped_after = time.monotonic() - asked
        await asyncio.sleep(1.5)  # time enough for a wrong re-run
        assert worker.poll() is None
    finally:
        stop(worker)
    assert stopped_after < 5.0  # the CLI process itself takes most of this
    status, retries, error = (await job_statuses(pool))[job_id]
    assert (status, retries) == ("cancelled", 0) and error is not None and "cancelled while running" in error
    assert [phase for _, phase in await runs(pool, job_id)] == ["start", "cancelled"]  # never ran again
    again = tgms(db_url, "jobs", "cancel", str(job_id))
    assert (again.returncode, again.stdout.strip()) == (
        1,
        f"tgms: jobs: job {job_id} is cancelled: only pending or running jobs can be cancelled",
    )
    missing = tgms(db_url, "jobs", "retry", "999999")
    assert (missing.returncode, missing.stdout.strip()) == (1, "tgms: jobs: no job 999999")


async def test_cancel_notification_stops_the_handler_before_any_heartbeat(
    pool: AsyncConnectionPool, db_url: str
) -> None:
    """The heartbeat here comes once a minute: only the notification can stop the handler in time. The
    handler finishes its uninterruptible step after the cancel; its completion must not win."""
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def handler(ctx: JobContext, job: queue.Job) -> None:
        started.set()
        try:
            await uninterruptible(asyncio.sleep(1.0))
        except asyncio.CancelledError:
            cancelled.set()
            raise

    job_id = await enqueue(pool, "tgms_a")
    worker = make_worker(db_url, {"tgms_a": handler}, lease_seconds=600.0, heartbeat_seconds=60.0)
    async with running(worker):
        await asyncio.wait_for(started.wait(), 10)
        await asyncio.sleep(0.2)  # past the worker's first heartbeat
        async with pool.connection() as conn:
            assert await queue.cancel(conn, job_id) == "running"
        await asyncio.wait_for(cancelled.wait(), 10)
        await asyncio.sleep(0.5)
        assert not worker._inflight
    assert (await job_statuses(pool))[job_id][:2] == ("cancelled", 0)


# ---------------------------------------------------------------------------- blocked event loop
async def _stalls(pool: AsyncConnectionPool) -> list[tuple[str, int, str, float | None, str | None]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT worker_id, pid, status, loop_stall_seconds, last_error FROM bot_health ORDER BY worker_id"
        )
        return [(str(w), int(p), str(s), st, e) for w, p, s, st, e in await cur.fetchall()]


async def _any_stalled(pool: AsyncConnectionPool) -> bool:
    return any(status == "stalled" for _, _, status, _, _ in await _stalls(pool))


async def test_a_handler_blocking_the_loop_is_reported_and_fails_across_workers(
    pool: AsyncConnectionPool, db_url: str
) -> None:
    """`time.sleep` in a handler: the watchdog reports the stall in bot_health; the job's lease lapses
    and another worker takes it (and blocks too); each lapse counts a retry, so it ends 'failed'; a job
    enqueued meanwhile is run by the worker that is not blocked."""
    env = {"HARNESS_STALL_REPORT": "0.5", "HARNESS_STALL_EXIT": "60"}
    blocker = await enqueue(pool, "tgms_test_block", {"seconds": 4}, max_retries=1)
    a = start_harness(db_url, lease=1.5, **env)
    b = start_harness(db_url, lease=1.5, **env)
    try:
        await wait_until(lambda: has_runs(pool, blocker, "start", 1))
        first = (await runs(pool, blocker, "start"))[0][0]
        other = b.pid if first == a.pid else a.pid
        noop = await enqueue(pool, "tgms_test_noop")
        await wait_until(lambda: _any_stalled(pool), timeout=10)
        await wait_until(lambda: status_is(pool, noop, "done"), timeout=10)
        await wait_until(lambda: status_is(pool, blocker, "failed"), timeout=40)
        assert a.poll() is None and b.poll() is None  # blocked for less than the exit threshold
        later = await enqueue(pool, "tgms_test_noop")
        await wait_until(lambda: status_is(pool, later, "done"), timeout=20)  # both keep going
    finally:
        stop(a, b)
    assert [pid for pid, _ in await runs(pool, noop, "end")] == [other]
    started = [pid for pid, _ in await runs(pool, blocker, "start")]
    assert len(started) == 2 and set(started) == {a.pid, b.pid}  # one run per worker, then failed
    status, retries, error = (await job_statuses(pool))[blocker]
    assert (status, retries) == ("failed", 2) and error is not None and error.startswith("lease expired")
    reports = {pid: (seconds, err) for _, pid, _, seconds, err in await _stalls(pool)}
    seconds, err = reports[first]
    assert seconds is not None and seconds >= 0.5
    assert err is not None and f"by job {blocker} (tgms_test_block)" in err and "in block_handler" in err


async def test_a_loop_blocked_past_the_exit_threshold_ends_the_process(pool: AsyncConnectionPool, db_url: str) -> None:
    """A worker whose loop never comes back exits non-zero (a supervisor restarts it); its job's lease
    lapses and the job ends 'failed' through another worker's reaper."""
    blocker = await enqueue(pool, "tgms_test_block", {"seconds": 600}, max_retries=0)
    stuck = start_harness(db_url, lease=1.5, HARNESS_STALL_REPORT="0.5", HARNESS_STALL_EXIT="2")
    try:
        await wait_until(lambda: has_runs(pool, blocker, "start", 1))
        assert stuck.wait(30) == 70
        rescuer = start_harness(db_url, lease=1.5)
        try:
            await wait_until(lambda: status_is(pool, blocker, "failed"), timeout=20)
        finally:
            stop(rescuer)
    finally:
        if stuck.poll() is None:
            stuck.send_signal(signal.SIGKILL)
            stuck.wait(5)
    rows = {pid: (status, seconds, err) for _, pid, status, seconds, err in await _stalls(pool)}
    status, seconds, err = rows[stuck.pid]
    assert status == "stalled" and seconds is not None and seconds >= 2
    assert err is not None and "event loop blocked" in err
    assert (await job_statuses(pool))[blocker][:2] == ("failed", 1)
