"""`tgms worker main|tgms`: run one pool's worker until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable

from tgms_tui.backend.bootstrap import prepare
from tgms_tui.backend.config import ConfigError, load_settings, port_number
from tgms_tui.backend.queue import Pool

from . import metrics
from .bots import build_services
from .registry import TIME_LIMITS, check_time_limits, handlers_for, periodic_for
from .runner import Worker, WorkerOptions

# uvloop where it is installed (with uvicorn[standard], on CPython off Windows): asyncio's own event
# loop was a fifth of a TGMS worker's CPU per approval. Else asyncio's.
LOOP_FACTORY: Callable[[], asyncio.AbstractEventLoop] | None
try:
    import uvloop

    LOOP_FACTORY = uvloop.new_event_loop
except ImportError:  # pragma: no cover (Windows, PyPy)
    LOOP_FACTORY = None


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
    parser.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        metavar="N",
        help="serve this worker's Prometheus /metrics on port N (default: TGMS_WORKER_METRICS_PORT; off when unset)",
    )
    parser.add_argument(
        "--metrics-host",
        default=None,
        help="address for --metrics-port (default: TGMS_WORKER_METRICS_HOST, else 127.0.0.1)",
    )


def _port(raw: str) -> int:
    try:
        return port_number("--metrics-port", raw)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# The main pool's jobs record what updates say (member activity, titles, the bot's own status): none
# has a person waiting on it, so its worker lets them gather for this long and claims and completes
# them in batches, a few statements for many updates. Join requests (the TGMS pool) never wait.
MAIN_BATCH_DELAY_SECONDS = 0.05


def run(args: argparse.Namespace) -> int:
    return run_pool(
        args.pool,
        concurrency=args.concurrency,
        grace=args.grace,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
    )


def run_pool(
    pool: Pool,
    *,
    concurrency: int | None = None,
    grace: float = 20.0,
    metrics_port: int | None = None,
    metrics_host: str | None = None,
) -> int:
    """Start the worker of `pool` on the configured database; returns the exit code."""
    settings = load_settings()
    port = metrics_port if metrics_port is not None else settings.worker_metrics_port
    host = metrics_host or settings.worker_metrics_host
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
        exporter = None
        if port is not None:
            try:
                exporter = await metrics.start_server(host, port)
            except OSError as exc:
                raise ConfigError(
                    "--metrics-port/TGMS_WORKER_METRICS_PORT", f"cannot listen on {host}:{port}: {exc.strerror or exc}"
                ) from None
        try:
            await worker.run_forever()
        finally:
            if exporter is not None:
                exporter.close()
            await services.aclose()

    with asyncio.Runner(loop_factory=LOOP_FACTORY) as runner:
        runner.run(serve())
    return 0  # a worker whose event loop stays blocked exits with EXIT_LOOP_STALLED from its watchdog
