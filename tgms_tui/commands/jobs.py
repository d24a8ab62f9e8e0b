"""`tgms jobs list|cancel|retry`: the job queue from the shell, through the same backend calls the TUI
uses. Cancelling a running job stops its handler in the worker that runs it at once (a notification on
the jobs channel; the worker's heartbeat is the fallback) and the job never runs again unless retried."""

from __future__ import annotations

import argparse
import asyncio
import json

import psycopg

from tgms_tui.backend import queue
from tgms_tui.backend.bootstrap import prepare
from tgms_tui.backend.redaction import redact


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = sub.add_parser("list", help="the newest jobs, optionally of one status or type")
    ls.add_argument("--status", choices=queue.STATUSES, help="only jobs with this status")
    ls.add_argument("--type", dest="job_type", help="only jobs of this job type, e.g. tgms_send_to_groups")
    ls.add_argument("--limit", type=_positive, default=50, help="at most this many (default 50)")
    ls.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    cancel = sub.add_parser("cancel", help="cancel a pending or running job (a running one is stopped at once)")
    cancel.add_argument("job_id", type=int)
    retry = sub.add_parser("retry", help="run a failed or cancelled job again (its retries start from 0)")
    retry.add_argument("job_id", type=int)


def _positive(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {raw!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {raw!r}")
    return value


def run(args: argparse.Namespace) -> int:
    _settings, url = prepare(logging_on=False)
    return asyncio.run(_jobs(url, args))


async def _jobs(url: str, args: argparse.Namespace) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        if args.action == "list":
            rows = await queue.list_jobs(conn, status=args.status, job_type=args.job_type, limit=args.limit)
            _print_jobs(rows, as_json=args.json)
            return 0
        if args.action == "cancel":
            had = await queue.cancel(conn, args.job_id)
            await conn.commit()
            if had is None:
                return _refuse(await queue.status_of(conn, args.job_id), args.job_id, "pending or running", "cancelled")
            note = " (its worker stops the handler now)" if had == "running" else ""
            print(f"job {args.job_id} cancelled{note}")
            return 0
        ok = await queue.retry(conn, args.job_id)
        await conn.commit()
        if not ok:
            return _refuse(await queue.status_of(conn, args.job_id), args.job_id, "failed or cancelled", "retried")
        print(f"job {args.job_id} queued again")
        return 0


def _refuse(status: str | None, job_id: int, allowed: str, verb: str) -> int:
    if status is None:
        print(f"tgms: jobs: no job {job_id}")
    else:
        print(f"tgms: jobs: job {job_id} is {status}: only {allowed} jobs can be {verb}")
    return 1


def _print_jobs(rows: list[queue.JobSummary], *, as_json: bool) -> None:
    if as_json:
        for r in rows:
            print(
                json.dumps(
                    {
                        "job_id": r.job_id,
                        "job_type": r.job_type,
                        "status": r.status,
                        "retries": r.retries,
                        "max_retries": r.max_retries,
                        "priority": r.priority,
                        "run_at": r.run_at.isoformat(),
                        "updated_at": r.updated_at.isoformat(),
                        "finished_at": r.finished_at.isoformat() if r.finished_at else None,
                        "locked_by": r.locked_by,
                        "last_error": redact(r.last_error) if r.last_error else None,
                    },
                    ensure_ascii=False,
                )
            )
        return
    print(f"{'job_id':>8}  {'job_type':<28} {'status':<9} {'tries':>5}  {'updated':<19}  last error")
    for r in rows:
        error = " ".join(redact(r.last_error).split())[:60] if r.last_error else ""
        tries = f"{r.retries}/{r.max_retries}"
        print(
            f"{r.job_id:>8}  {r.job_type[:28]:<28} {r.status:<9} {tries:>5}  {r.updated_at:%Y-%m-%d %H:%M:%S}  {error}"
        )
    print(f"{len(rows)} job(s)")
