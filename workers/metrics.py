"""Prometheus metrics of one worker process, and the opt-in `/metrics` endpoint that serves them.

One worker per process, so the figures are process-wide (`METRICS`): the runner counts jobs claimed,
done and failed and times each handler; the Bot API client counts calls by method and outcome and
times them; the rate limiter records the time sends waited and the 429 pauses. Labels are job types,
Bot API method names and exception class names: closed sets chosen by the code, never a token, a chat
or a user. Served by a tiny HTTP server on the worker's own event loop (`tgms worker --metrics-port N`
or TGMS_WORKER_METRICS_PORT; 127.0.0.1 unless TGMS_WORKER_METRICS_HOST says otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

from tgms_tui.backend.prometheus_text import (
    CONTENT_TYPE,
    Histogram,
    counter,
    gauge,
    histograms,
)

log = logging.getLogger(__name__)

JOB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
WAIT_BUCKETS = (0.0, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
MAX_REQUEST = 8192  # bytes of request head read before giving up on a client


class WorkerMetrics:
    """Counters and histograms of this process (plain increments: one event loop)."""

    def __init__(self) -> None:
        self.claimed: defaultdict[str, int] = defaultdict(int)  # job_type
        self.done: defaultdict[str, int] = defaultdict(int)
        self.failed: defaultdict[tuple[str, str], int] = defaultdict(int)  # (job_type, "retry" | "final")
        self.snoozed: defaultdict[str, int] = defaultdict(int)
        self.duration: dict[str, Histogram] = {}
        self.calls: defaultdict[tuple[str, str], int] = defaultdict(int)  # (method, outcome)
        self.call_duration: dict[str, Histogram] = {}
        self.rate_wait = Histogram(WAIT_BUCKETS)
        self.pauses = 0
        self.pause_seconds = 0.0
        self.in_flight = 0

    # ---------------------------------------------------------------- recording
    def job_claimed(self, job_type: str) -> None:
        self.claimed[job_type] += 1

    def job_finished(self, job_type: str, outcome: str, seconds: float) -> None:
        """`outcome`: done, snoozed, retry (failed, will run again) or final (failed for good)."""
        if outcome == "done":
            self.done[job_type] += 1
        elif outcome == "snoozed":
            self.snoozed[job_type] += 1
        else:
            self.failed[(job_type, outcome)] += 1
        hist = self.duration.get(job_type)
        if hist is None:
            hist = self.duration[job_type] = Histogram(JOB_BUCKETS)
        hist.observe(seconds)

    def telegram_call(self, method: str, outcome: str, seconds: float) -> None:
        self.calls[(method, outcome)] += 1
        hist = self.call_duration.get(method)
        if hist is None:
            hist = self.call_duration[method] = Histogram()
        hist.observe(seconds)

    def rate_limited(self, waited: float) -> None:
        self.rate_wait.observe(waited)

    def paused(self, seconds: float) -> None:
        self.pauses += 1
        self.pause_seconds += seconds

    # ---------------------------------------------------------------- exposition
    def render(self) -> str:
        out: list[str] = []
        counter(
            out,
            "tgms_worker_jobs_claimed_total",
            "Jobs claimed by this worker, by job type.",
            (({"job_type": t}, v) for t, v in sorted(self.claimed.items())),
        )
        counter(
            out,
            "tgms_worker_jobs_done_total",
            "Jobs whose handler finished, by job type.",
            (({"job_type": t}, v) for t, v in sorted(self.done.items())),
        )
        counter(
            out,
            "tgms_worker_jobs_failed_total",
            "Handler failures, by job type and outcome (retry: will run again; final: failed for good).",
            (({"job_type": t, "outcome": o}, v) for (t, o), v in sorted(self.failed.items())),
        )
        counter(
            out,
            "tgms_worker_jobs_snoozed_total",
            "Jobs put back to run later on purpose (rate limits, resumable slices), by job type.",
            (({"job_type": t}, v) for t, v in sorted(self.snoozed.items())),
        )
        gauge(out, "tgms_worker_jobs_in_flight", "Handlers running now.", [({}, self.in_flight)])
        histograms(
            out,
            "tgms_worker_job_duration_seconds",
            "Handler run time, by job type (every outcome).",
            "job_type",
            self.duration,
        )
        counter(
            out,
            "tgms_worker_telegram_calls_total",
            "Bot API calls, by method and outcome (ok, or the error's class, e.g. RetryAfter, Forbidden).",
            (({"method": m, "outcome": o}, v) for (m, o), v in sorted(self.calls.items())),
        )
        histograms(
            out,
            "tgms_worker_telegram_call_duration_seconds",
            "Bot API call time (the HTTP round trip), by method.",
            "method",
            self.call_duration,
        )
        histograms(
            out,
            "tgms_worker_rate_limit_wait_seconds",
            "Time a send waited for the shared rate limiter (0 when it went at once).",
            "limiter",
            {"messages": self.rate_wait},
        )
        counter(
            out,
            "tgms_worker_rate_limit_pauses_total",
            "429 answers (RetryAfter) that paused this bot in every process.",
            [({}, self.pauses)],
        )
        counter(
            out,
            "tgms_worker_rate_limit_pause_seconds_total",
            "Seconds of pause those 429 answers asked for.",
            [({}, self.pause_seconds)],
        )
        return "\n".join(out) + "\n"


METRICS = WorkerMetrics()


# ---------------------------------------------------------------- the endpoint
async def _serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5.0)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
        writer.close()
        return
    parts = head.split(b"\r\n", 1)[0].split()
    method, target = (parts[0], parts[1]) if len(parts) >= 2 else (b"", b"")
    path = target.split(b"?", 1)[0]
    if method not in (b"GET", b"HEAD"):
        status, body, ctype = "405 Method Not Allowed", b"GET only\n", "text/plain; charset=utf-8"
    elif path in (b"/metrics", b"/metrics/"):
        status, body, ctype = "200 OK", METRICS.render().encode(), CONTENT_TYPE
    elif path == b"/healthz":
        status, body, ctype = "200 OK", b'{"status": "ok"}', "application/json"
    else:
        status, body, ctype = "404 Not Found", b"not found: try /metrics\n", "text/plain; charset=utf-8"
    response = (
        f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with contextlib.suppress(ConnectionError):
        writer.write(response + (b"" if method == b"HEAD" else body))
        await writer.drain()
    writer.close()


async def start_server(host: str, port: int) -> asyncio.Server:
    """Serve /metrics (and /healthz) on `host:port` from this event loop; port 0 picks a free one."""
    server = await asyncio.start_server(_serve_client, host, port, limit=MAX_REQUEST)
    bound = server.sockets[0].getsockname() if server.sockets else (host, port)
    log.info("worker metrics on http://%s:%s/metrics", bound[0], bound[1])
    return server
