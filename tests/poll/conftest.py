"""Fixtures for the long-polling intake: the simulator with no webhook set, `tgms poll` processes,
the TGMS worker, one database."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.token_guard import register_secret
from tests.workers.harness import ADMIN_KEY, WEBHOOK_SECRET, Stack

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


@pytest.fixture
def stack(db_url: str, tmp_path: Path) -> Iterator[Stack]:
    """Simulator (two bots, flood limits off, no webhook) on the test's database; no process yet."""
    with Stack(db_url, tmp_path, webhook=False) as s:
        for secret in (s.main_token, s.tgms_token, WEBHOOK_SECRET, ADMIN_KEY):
            register_secret(secret)
        yield s
