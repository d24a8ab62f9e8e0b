"""Reading the simulator's record of Bot API calls (`GET /_sim/calls`) as the test oracle.

The simulator is Telegram: what it recorded is what Telegram saw, independently of what TGMS believes
it did (its own tables). Every exact count in the reliability suite compares the two.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from tests.support import max_in_window as max_in_window  # the scenarios read it from here

Call = dict[str, Any]


def per_chat(calls: Iterable[Call], *, ok: bool | None = None) -> Counter[int]:
    """How many calls each chat got (only successful ones with ok=True, failed with ok=False)."""
    return Counter(int(c["chat_id"]) for c in calls if ok is None or c["ok"] is ok)


def per_request(calls: Iterable[Call], *, ok: bool | None = None) -> Counter[tuple[int, int]]:
    """Join-request answers (approve/decline) per (chat id, user id)."""
    out: Counter[tuple[int, int]] = Counter()
    for c in calls:
        if ok is None or c["ok"] is ok:
            out[(int(c["chat_id"]), int(c["params"]["user_id"]))] += 1
    return out


class Sampler:
    """Polls `probe()` every `interval` seconds in a thread until stopped; keeps (time, value)."""

    def __init__(self, probe: Callable[[], Any], interval: float = 0.1) -> None:
        self.probe = probe
        self.interval = interval
        self.samples: list[tuple[float, Any]] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reliability-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.time(), self.probe()))
            except Exception:  # the database may be down on purpose; count and go on
                self.errors += 1
            self._stop.wait(self.interval)

    def peak(self, key: Callable[[Any], float] = float) -> float:
        return max((key(v) for _, v in self.samples), default=0)
