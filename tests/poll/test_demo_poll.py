"""`tgms demo --intake poll`: the whole demo with no webhook server; updates arrive by long polling
and every approval and broadcast adds up as with the webhook."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.demo.helpers import assert_nothing_left, demo_data_dir

pytestmark = pytest.mark.slow


def test_the_demo_runs_on_long_polling() -> None:
    with demo_data_dir() as data_dir:
        process = subprocess.run(
            [sys.executable, "-m", "tgms_tui.commands.cli", "demo", "--headless", "--intake", "poll",
             "--duration", "25", "--seed", "3", "--json", "--data-dir", str(data_dir)],
            capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        assert process.returncode == 0, process.stderr[-3000:]
        run = json.loads(process.stdout)
        processes = run["processes"]
        assert_nothing_left(
            [c["pid"] for c in processes["children"].values()] + [processes["postmaster_pid"]], [], data_dir / "demo"
        )
    assert run["intake"] == "poll"
    assert set(processes["children"]) == {"sim", "poller", "worker-main", "worker-tgms"}
    assert processes["children"]["poller"]["exit_code"] == 0 and processes["died"] == []
    db, sim = run["db"], run["sim"]
    # Groups registered from polled my_chat_member updates; approvals as many as the simulator answered.
    assert db["join_requests"].get("approved", 0) > 10
    assert db["join_requests"]["approved"] == sim["approve_ok"]
    assert sum(db["join_requests"].values()) == run["traffic"]["join_requests"]
    assert len(run["traffic"]["broadcasts"]) >= 3 and run["traffic"]["broadcast_errors"] == 0
    assert db["broadcasts"] == {"done": len(run["traffic"]["broadcasts"])}
    assert db["sent_messages"].get("sent", 0) == sim["group_sends_ok"] > 20
    # Nothing was left unconfirmed at the simulator, and nothing went to a webhook.
    assert all(b["pending"] == 0 and b["delivered"] == 0 for b in sim["webhook"]), sim["webhook"]
