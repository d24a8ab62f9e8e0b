"""The Prometheus text exposition format (version 0.0.4), for every TGMS process's /metrics.

Hand-written rather than prometheus_client: each TGMS process (a webhook process, each worker) keeps
and serves its own figures, which is the client's default single-process model too, but TGMS counts on
one event loop without locks and serves /metrics from that loop (a worker whose loop is stuck fails
its scrape, which is the truth), and the whole format TGMS uses is counters and histograms with fixed
label names: small enough to own, nothing to configure, no dependency. Label values must come from
closed sets chosen by the code (job types, method names, outcomes), never from request data or
secrets.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # last slot: +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)


def labels_text(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    body = ",".join(f'{k}="{escape(v)}"' for k, v in labels.items())
    return "{" + body + "}"


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) and not value.is_integer() else str(int(value))


def counter(out: list[str], name: str, help_text: str, samples: Iterable[tuple[dict[str, str], float]]) -> None:
    out.append(f"# HELP {name} {help_text}")
    out.append(f"# TYPE {name} counter")
    for labels, value in samples:
        out.append(f"{name}{labels_text(labels)} {number(value)}")


def gauge(out: list[str], name: str, help_text: str, samples: Iterable[tuple[dict[str, str], float]]) -> None:
    out.append(f"# HELP {name} {help_text}")
    out.append(f"# TYPE {name} gauge")
    for labels, value in samples:
        out.append(f"{name}{labels_text(labels)} {number(value)}")


def histogram_header(out: list[str], name: str, help_text: str) -> None:
    out.append(f"# HELP {name} {help_text}")
    out.append(f"# TYPE {name} histogram")


def histogram(out: list[str], name: str, labels: dict[str, str], hist: Histogram) -> None:
    cumulative = 0
    for bound, count in zip(hist.bounds, hist.counts, strict=False):
        cumulative += count
        out.append(f"{name}_bucket{labels_text({**labels, 'le': repr(float(bound))})} {cumulative}")
    cumulative += hist.counts[-1]
    out.append(f"{name}_bucket{labels_text({**labels, 'le': '+Inf'})} {cumulative}")
    out.append(f"{name}_sum{labels_text(labels)} {hist.sum!r}")
    out.append(f"{name}_count{labels_text(labels)} {cumulative}")


def histograms(out: list[str], name: str, help_text: str, label: str, hists: dict[str, Histogram]) -> None:
    """One histogram family keyed by a single label."""
    histogram_header(out, name, help_text)
    for value, hist in sorted(hists.items()):
        histogram(out, name, {label: value}, hist)
