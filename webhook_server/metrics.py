"""Prometheus metrics of one webhook process, written in the text exposition format (version 0.0.4).

Small enough to own: counters with fixed label names and one latency histogram. Values are per
process; with `--workers N` each worker keeps its own (scrape them all or sum on the Prometheus side).
Label values come from closed sets (bot, known update types, reasons), never from request data.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable

from .slow_clients import Counters as ConnectionCounters

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500)


class Histogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # last slot: +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class WebhookMetrics:
    """Counters the webhook server updates on its hot path (plain dict increments, no locks: one
    event loop per process)."""

    def __init__(self) -> None:
        self.updates_received: defaultdict[tuple[str, str], int] = defaultdict(int)  # (bot, type)
        self.duplicates: defaultdict[str, int] = defaultdict(int)  # bot
        self.rejected: defaultdict[tuple[str, str], int] = defaultdict(int)  # (route, reason)
        self.jobs_enqueued: defaultdict[str, int] = defaultdict(int)  # job_type
        self.broadcasts_created = 0
        self.idempotent_replays: defaultdict[str, int] = defaultdict(int)  # route
        self.batch_commits = 0
        self.batch_failures = 0
        self.latency: dict[str, Histogram] = {}
        self.batch_size = Histogram(BATCH_BUCKETS)

    def observe_latency(self, route: str, seconds: float) -> None:
        hist = self.latency.get(route)
        if hist is None:
            hist = self.latency[route] = Histogram(LATENCY_BUCKETS)
        hist.observe(seconds)

    def render(self) -> str:
        out: list[str] = []
        _counter(
            out,
            "tgms_webhook_updates_received_total",
            "Updates accepted and stored, by bot and type.",
            (({"bot": b, "type": t}, v) for (b, t), v in sorted(self.updates_received.items())),
        )
        _counter(
            out,
            "tgms_webhook_duplicates_total",
            "Redelivered updates dropped (already stored).",
            (({"bot": b}, v) for b, v in sorted(self.duplicates.items())),
        )
        _counter(
            out,
            "tgms_webhook_rejected_total",
            "Requests refused, by route and reason.",
            (({"route": r, "reason": why}, v) for (r, why), v in sorted(self.rejected.items())),
        )
        _counter(
            out,
            "tgms_webhook_jobs_enqueued_total",
            "Jobs enqueued, by job type.",
            (({"job_type": t}, v) for t, v in sorted(self.jobs_enqueued.items())),
        )
        _counter(
            out,
            "tgms_webhook_broadcasts_created_total",
            "Broadcasts created through the admin API.",
            [({}, self.broadcasts_created)],
        )
        _counter(
            out,
            "tgms_webhook_idempotent_replays_total",
            "Admin requests answered with the stored result of an earlier one (same Idempotency-Key).",
            (({"route": r}, v) for r, v in sorted(self.idempotent_replays.items())),
        )
        _counter(
            out,
            "tgms_webhook_connections_closed_total",
            "Connections closed by the server for a slow or oversized request (this process).",
            [
                ({"reason": "request_timeout"}, ConnectionCounters.timed_out),
                ({"reason": "headers_too_large"}, ConnectionCounters.headers_too_large),
            ],
        )
        _counter(
            out, "tgms_webhook_batch_commits_total", "Group-commit transactions committed.", [({}, self.batch_commits)]
        )
        _counter(
            out,
            "tgms_webhook_batch_failures_total",
            "Group-commit transactions that failed (503s).",
            [({}, self.batch_failures)],
        )
        out.append("# HELP tgms_webhook_request_duration_seconds Request latency, by route.")
        out.append("# TYPE tgms_webhook_request_duration_seconds histogram")
        for route, hist in sorted(self.latency.items()):
            _histogram(out, "tgms_webhook_request_duration_seconds", {"route": route}, hist)
        out.append("# HELP tgms_webhook_batch_size Updates per group-commit transaction.")
        out.append("# TYPE tgms_webhook_batch_size histogram")
        _histogram(out, "tgms_webhook_batch_size", {}, self.batch_size)
        return "\n".join(out) + "\n"


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) and not value.is_integer() else str(int(value))


def _counter(out: list[str], name: str, help_text: str, samples: Iterable[tuple[dict[str, str], float]]) -> None:
    out.append(f"# HELP {name} {help_text}")
    out.append(f"# TYPE {name} counter")
    for labels, value in samples:
        out.append(f"{name}{_labels(labels)} {_number(value)}")


def _histogram(out: list[str], name: str, labels: dict[str, str], hist: Histogram) -> None:
    cumulative = 0
    for bound, count in zip(hist.bounds, hist.counts, strict=False):
        cumulative += count
        out.append(f"{name}_bucket{_labels({**labels, 'le': _le(bound)})} {cumulative}")
    cumulative += hist.counts[-1]
    out.append(f"{name}_bucket{_labels({**labels, 'le': '+Inf'})} {cumulative}")
    out.append(f"{name}_sum{_labels(labels)} {hist.sum!r}")
    out.append(f"{name}_count{_labels(labels)} {cumulative}")


def _le(bound: float) -> str:
    return repr(float(bound))
