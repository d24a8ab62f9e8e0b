"""Prometheus metrics of one webhook process, written in the text exposition format (version 0.0.4).

Small enough to own: counters with fixed label names and one latency histogram. Values are per
process; with `--workers N` each worker keeps its own (scrape them all or sum on the Prometheus side).
Label values come from closed sets (bot, known update types, reasons), never from request data.
"""

from __future__ import annotations

from collections import defaultdict

from tgms_tui.backend.prometheus_text import Histogram, counter, histogram, histogram_header

from .slow_clients import Counters as ConnectionCounters

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500)
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class WebhookMetrics:
    """Counters the webhook server updates on its hot path (plain dict increments, no locks: one
    event loop per process)."""

    def __init__(self) -> None:
        self.updates_received: defaultdict[tuple[str, str], int] = defaultdict(int)  # (bot, type)
        self.duplicates: defaultdict[str, int] = defaultdict(int)  # bot
        self.rejected: defaultdict[tuple[str, str], int] = defaultdict(int)  # (route, reason)
        self.jobs_enqueued: defaultdict[str, int] = defaultdict(int)  # job_type
        self.activity_only: defaultdict[str, int] = defaultdict(int)  # bot: stored with no job
        self.broadcasts_created = 0
        self.idempotent_replays: defaultdict[str, int] = defaultdict(int)  # route
        self.batch_commits = 0
        self.batch_failures = 0
        self.latency: dict[str, Histogram] = {}
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.http_latency: dict[tuple[str, str], Histogram] = {}  # (route template, method)
        self.http_responses: defaultdict[tuple[str, str, str], int] = defaultdict(int)  # (route, method, code)

    def observe_latency(self, route: str, seconds: float) -> None:
        hist = self.latency.get(route)
        if hist is None:
            hist = self.latency[route] = Histogram(LATENCY_BUCKETS)
        hist.observe(seconds)

    def observe_http(self, route: str, method: str, status: int, seconds: float) -> None:
        """A request outside Telegram's fast path: the route's template, not the raw path."""
        method = method if method in HTTP_METHODS else "OTHER"
        hist = self.http_latency.get((route, method))
        if hist is None:
            hist = self.http_latency[(route, method)] = Histogram(LATENCY_BUCKETS)
        hist.observe(seconds)
        self.http_responses[(route, method, str(status))] += 1

    def render(self) -> str:
        out: list[str] = []
        counter(
            out,
            "tgms_webhook_updates_received_total",
            "Updates accepted and stored, by bot and type.",
            (({"bot": b, "type": t}, v) for (b, t), v in sorted(self.updates_received.items())),
        )
        counter(
            out,
            "tgms_webhook_duplicates_total",
            "Redelivered updates dropped (already stored).",
            (({"bot": b}, v) for b, v in sorted(self.duplicates.items())),
        )
        counter(
            out,
            "tgms_webhook_rejected_total",
            "Requests refused, by route and reason.",
            (({"route": r, "reason": why}, v) for (r, why), v in sorted(self.rejected.items())),
        )
        counter(
            out,
            "tgms_webhook_jobs_enqueued_total",
            "Jobs enqueued, by job type.",
            (({"job_type": t}, v) for t, v in sorted(self.jobs_enqueued.items())),
        )
        counter(
            out,
            "tgms_webhook_activity_only_total",
            "Updates whose member activity was recorded on intake, with no job (by bot).",
            (({"bot": b}, v) for b, v in sorted(self.activity_only.items())),
        )
        counter(
            out,
            "tgms_webhook_broadcasts_created_total",
            "Broadcasts created through the admin API.",
            [({}, self.broadcasts_created)],
        )
        counter(
            out,
            "tgms_webhook_idempotent_replays_total",
            "Admin requests answered with the stored result of an earlier one (same Idempotency-Key).",
            (({"route": r}, v) for r, v in sorted(self.idempotent_replays.items())),
        )
        counter(
            out,
            "tgms_webhook_connections_closed_total",
            "Connections closed by the server for a slow or oversized request (this process).",
            [
                ({"reason": "request_timeout"}, ConnectionCounters.timed_out),
                ({"reason": "headers_too_large"}, ConnectionCounters.headers_too_large),
            ],
        )
        counter(
            out, "tgms_webhook_batch_commits_total", "Group-commit transactions committed.", [({}, self.batch_commits)]
        )
        counter(
            out,
            "tgms_webhook_batch_failures_total",
            "Group-commit transactions that failed (503s).",
            [({}, self.batch_failures)],
        )
        histogram_header(out, "tgms_webhook_request_duration_seconds", "Request latency, by route.")
        for route, hist in sorted(self.latency.items()):
            histogram(out, "tgms_webhook_request_duration_seconds", {"route": route}, hist)
        histogram_header(
            out,
            "tgms_webhook_http_request_duration_seconds",
            "Latency of every other request (admin API, health, metrics), by route template and method.",
        )
        for (route, method), hist in sorted(self.http_latency.items()):
            histogram(out, "tgms_webhook_http_request_duration_seconds", {"route": route, "method": method}, hist)
        counter(
            out,
            "tgms_webhook_http_responses_total",
            "Responses to those requests, by route template, method and status code.",
            (({"route": r, "method": m, "code": c}, v) for (r, m, c), v in sorted(self.http_responses.items())),
        )
        histogram_header(out, "tgms_webhook_batch_size", "Updates per group-commit transaction.")
        histogram(out, "tgms_webhook_batch_size", {}, self.batch_size)
        return "\n".join(out) + "\n"
