"""`tgms worker main|tgms`: run one pool's worker until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio

from tgms_tui.backend.bootstrap import prepare
from tgms_tui.backend.config import load_settings
from tgms_tui.backend.queue import Pool

from .bots import build_services
from .registry import TIME_LIMITS, check_time_limits, handlers_for, periodic_for
from .runner import Worker, WorkerOptions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "pool",
        choices=["main", "tgms"],
        help="main: job types not starting with tgms_; tgms: job types starting with tgms_",
    )
    parser.add_argument(
        "--concurrency", type=int, default=None, help="jobs run at once (default: TGMS_WORKER_CONCURRENCY, 16)"
    )
    parser.add_argument(
        "--grace", type=float, default=20.0, help="seconds in-flight jobs get to finish on SIGTERM/SIGINT (default 20)"
    )


# The main pool's jobs record what updates say (member activity, titles, the bot's own status): none
# has a person waiting on it, so its worker lets them gather for this long and claims and completes
# them in batches, a few statements for many updates. Join requests (the TGMS pool) never wait.
MAIN_BATCH_DELAY_SECONDS = 0.05


def run(args: argparse.Namespace) -> int:
    return run_pool(args.pool, concurrency=args.concurrency, grace=args.grace)


def run_pool(pool: Pool, *, concurrency: int | None = None, grace: float = 20.0) -> int:
    """Start the worker of `pool` on the configured database; returns the exit code."""
    settings = load_settings()
    check_time_limits(settings)  # before the database is touched: a typo is one line, at once
    settings, url = prepare(settings)
    options = WorkerOptions(
        concurrency=concurrency or settings.worker_concurrency,
        lease_seconds=settings.lease_seconds,
        grace_seconds=grace,
        periodic=periodic_for(pool, settings),
        batch_delay_seconds=MAIN_BATCH_DELAY_SECONDS if pool == "main" else 0.0,
        time_limits=TIME_LIMITS,
    )
    services = build_services(settings)
    worker = Worker(url, pool, handlers_for(pool), settings, options, services=services)

    async def serve() -> None:
        try:
            await worker.run_forever()
        finally:
            await services.aclose()

    asyncio.run(serve())
    return 0  # a worker whose event loop stays blocked exits with EXIT_LOOP_STALLED from its watchdog
