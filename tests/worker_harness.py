"""A real worker process with test handlers, for tests that kill or signal workers.

Usage: python -m tests.worker_harness DATABASE_URL POOL [lease_seconds] [grace_seconds]
Handlers (job types of the 'tgms' pool):
  tgms_test_sleep  sleeps payload["seconds"], then records its run in test_runs
  tgms_test_noop   records its run
  tgms_test_hang   records 'start', then awaits for ever; records 'cancelled' when cancelled
  tgms_test_block  records 'start', blocks the event loop (time.sleep) for payload["seconds"], records 'end'
Every run inserts (job_id, worker pid, phase) into test_runs, so tests can count executions.
Settings come from the environment (TGMS_JOB_TIMEOUTS ...); HARNESS_STALL_REPORT / HARNESS_STALL_EXIT set
the watchdog's thresholds (seconds).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time

from tgms_tui.backend.config import load_settings
from tgms_tui.backend.queue import Backoff, Job
from workers.runner import JobContext, Worker, WorkerOptions


async def _record(ctx: JobContext, job: Job, phase: str) -> None:
    async with ctx.db.connection() as conn:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS test_runs (job_id bigint, pid int, phase text, at timestamptz DEFAULT now())"
        )
        await conn.execute(
            "INSERT INTO test_runs (job_id, pid, phase) VALUES (%s, %s, %s)", (job.job_id, os.getpid(), phase)
        )


async def sleep_handler(ctx: JobContext, job: Job) -> None:
    await _record(ctx, job, "start")
    await asyncio.sleep(float(job.payload.get("seconds", 1)))
    await _record(ctx, job, "end")


async def noop_handler(ctx: JobContext, job: Job) -> None:
    await _record(ctx, job, "end")


async def hang_handler(ctx: JobContext, job: Job) -> None:
    await _record(ctx, job, "start")
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        await asyncio.shield(_record(ctx, job, "cancelled"))
        raise


async def block_handler(ctx: JobContext, job: Job) -> None:
    await _record(ctx, job, "start")
    time.sleep(float(job.payload.get("seconds", 1)))  # the bug under test: a blocking call in the loop
    await _record(ctx, job, "end")


def _seconds(name: str) -> float | None:
    raw = os.environ.get(name)
    return float(raw) if raw else None


def main() -> None:
    url, pool = sys.argv[1], sys.argv[2]
    lease = float(sys.argv[3]) if len(sys.argv) > 3 else 60.0
    grace = float(sys.argv[4]) if len(sys.argv) > 4 else 20.0
    options = WorkerOptions(
        concurrency=4,
        lease_seconds=lease,
        heartbeat_seconds=min(1.0, lease / 3),
        grace_seconds=grace,
        poll_seconds=1.0,
        backoff=Backoff(base=0.05, cap=0.2),
        stall_report_seconds=_seconds("HARNESS_STALL_REPORT"),
        stall_exit_seconds=_seconds("HARNESS_STALL_EXIT"),
    )
    handlers = {
        "tgms_test_sleep": sleep_handler,
        "tgms_test_noop": noop_handler,
        "tgms_test_hang": hang_handler,
        "tgms_test_block": block_handler,
    }
    settings = dataclasses.replace(load_settings(dotenv=None), database_url=url)
    worker = Worker(url, pool, handlers, settings, options)  # type: ignore[arg-type]
    print("ready", flush=True)
    asyncio.run(worker.run_forever())


if __name__ == "__main__":
    main()
