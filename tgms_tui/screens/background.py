"""Start a screen's async work in a Textual worker, handing over the coroutine *function*.

`run_worker(self._load())` builds the coroutine at once; when an `exclusive` worker of the same group
replaces it before it starts (a reload right after another), Textual cancels it unstarted and the
coroutine is never awaited (a RuntimeWarning, and the work silently skipped). Given the function,
Textual creates the coroutine only when the worker runs. (Typed here once: mypy cannot infer the
worker's result from Textual's union of work types.)
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from textual.dom import DOMNode
from textual.worker import Worker


def run_in_background(
    node: DOMNode, work: Callable[[], Coroutine[Any, Any, None]], *, group: str, exclusive: bool = False
) -> Worker[None]:
    """`work()` in a worker of `group` on `node`; errors are the work's to report (exit_on_error off)."""
    return node.run_worker(work, group=group, exclusive=exclusive, exit_on_error=False)
