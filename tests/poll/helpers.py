"""Helpers for the long-polling intake's tests and the approval-latency benchmark: `tgms poll`
processes on a `Stack` (tests/workers/harness.py) and what the simulator recorded about them."""

from __future__ import annotations

import subprocess
from typing import Any

from tests.workers.harness import Stack

JOIN_JOB = "tgms_process_join_request"
APPROVE = "approveChatJoinRequest"


def start_poller(stack: Stack, *args: str, wait: str | None = "polling", **env: str) -> subprocess.Popen[bytes]:
    """`tgms poll <args>` as a subprocess; returns once its row reads `wait` (None: at once)."""
    proc = stack._spawn("poller", ["-m", "tgms_tui.commands.cli", "poll", *args], stack.env(**env))
    if wait is not None:
        stack.wait_for(
            lambda: stack.scalar(
                "SELECT count(*) FROM bot_health WHERE bot_name = 'poller' AND pid = %s AND status = %s",
                (proc.pid, wait),
            ),
            timeout=30,
            what=f"poller {proc.pid} {wait}",
        )
    return proc


def poll_conflicts(stack: Stack) -> list[dict[str, Any]]:
    """getUpdates calls that ended in 409: pollers fighting over a bot."""
    return [c for c in stack.calls("getUpdates") if c.get("error_code") == 409]


def approvals_per_request(stack: Stack) -> dict[tuple[int, int], int]:
    out: dict[tuple[int, int], int] = {}
    for call in stack.calls(APPROVE, ok=True):
        key = (int(call["chat_id"]), int(call["params"]["user_id"]))
        out[key] = out.get(key, 0) + 1
    return out
