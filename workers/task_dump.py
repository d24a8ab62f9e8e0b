"""`kill -USR1 <worker pid>`: every asyncio task of the worker, and where each one waits, in its log.

A handler that hangs on something with no time limit keeps its job 'running' (the heartbeat keeps the
lease) and writes nothing; py-spy shows threads, not the coroutines parked on the event loop, and a
task's own `get_stack` stops at its outermost coroutine. The dump follows each task's await chain
(coroutine → the coroutine it awaits → ... → the future it is parked on) and prints one line per
frame. Only code locations, never local variables or arguments: no secret reaches the log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

MAX_DEPTH = 40  # frames per task


def await_chain(awaitable: Any) -> list[str]:
    """`file:line in function` for each coroutine or generator along the await chain, innermost last,
    then what the innermost one waits on (a future, a task, ...) if anything."""
    lines: list[str] = []
    current = awaitable
    while current is not None and len(lines) < MAX_DEPTH:
        frame = getattr(current, "cr_frame", None) or getattr(current, "gi_frame", None)
        frame = frame or getattr(current, "ag_frame", None)
        if frame is None:
            if not isinstance(current, asyncio.Future) or not current.done():
                lines.append(f"waiting on {type(current).__module__}.{type(current).__qualname__}")
            break
        code = frame.f_code
        lines.append(f"{code.co_filename}:{frame.f_lineno} in {code.co_name}")
        current = (
            getattr(current, "cr_await", None)
            or getattr(current, "gi_yieldfrom", None)
            or getattr(current, "ag_await", None)
        )
    return lines


def describe_tasks(labels: Mapping[asyncio.Task[Any], str] | None = None) -> str:
    """Every task of the running loop, one block each: its name (or `labels`' text for it) and its
    await chain."""
    tasks = sorted(asyncio.all_tasks(), key=lambda t: t.get_name())
    blocks = [f"{len(tasks)} asyncio task(s)"]
    for task in tasks:
        label = (labels or {}).get(task) or task.get_name()
        chain = await_chain(task.get_coro())
        blocks.append("\n".join([f"--- {label}", *(f"    {line}" for line in chain)]))
    return "\n".join(blocks)
