"""`tgms demo --headless`: the whole system runs, the numbers TGMS records agree with what the simulator
saw, the scripted faults have their effect, and nothing is left running afterwards.

One real run (a subprocess, its own data directory) shared by the tests of this module.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.demo.helpers import assert_nothing_left, demo_data_dir, demo_processes_of

pytestmark = pytest.mark.slow

DURATION = 35  # the opening script (kick, broadcasts, upgrade, owner kick, 429 storm) ends at 21.5 s


@pytest.fixture(scope="module")
def demo_run() -> Iterator[dict[str, Any]]:
    with demo_data_dir() as data_dir:
        yield _run(data_dir)


def _run(data_dir: Path) -> dict[str, Any]:
    process = subprocess.run(
        [sys.executable, "-m", "tgms_tui.commands.cli", "demo", "--headless", "--duration", str(DURATION),
         "--seed", "3", "--json", "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr[-3000:]
    summary = json.loads(process.stdout)
    summary["_stderr"] = process.stderr
    return summary


def test_every_logged_approval_is_an_approval_the_simulator_answered(demo_run: dict[str, Any]) -> None:
    db, sim = demo_run["db"], demo_run["sim"]
    approved = db["join_requests"].get("approved", 0)
    assert approved > 10, db["join_requests"]
    assert approved == sim["approve_ok"]
    # Every request the traffic made was answered (the 502 streak comes after the run's end).
    assert sum(db["join_requests"].values()) == demo_run["traffic"]["join_requests"]


def test_every_message_marked_sent_was_delivered_by_the_simulator(demo_run: dict[str, Any]) -> None:
    db, sim = demo_run["db"], demo_run["sim"]
    sent = db["sent_messages"].get("sent", 0)
    assert sent > 20, db["sent_messages"]
    assert sent == sim["group_sends_ok"]
    assert db["sent_messages"].get("ambiguous", 0) == 0
    # Failures only where the bot is gone: three at the group whose kick TGMS missed (then it is
    # deactivated), perhaps one at the group the owner removed it from, if a broadcast was on its way
    # there at that moment. The 429s never count.
    world = demo_run["world"]
    failed = {int(k): v for k, v in db["failed_sends_by_group"].items()}
    assert failed.pop(world["fault_kicked"]) == 3
    assert set(failed) <= {world["owner_kicked"]}, failed
    assert db["sent_messages"].get("failed", 0) == 3 + sum(failed.values())
    assert sim["too_many_requests"] >= 1
    assert db["broadcasts"] == {"done": len(demo_run["traffic"]["broadcasts"])}
    assert len(demo_run["traffic"]["broadcasts"]) == 4


def test_the_group_whose_kick_was_missed_is_deactivated_after_three_failures(demo_run: dict[str, Any]) -> None:
    kicked = demo_run["world"]["fault_kicked"]
    rows = {g["group_id"]: g for g in demo_run["db"]["deactivated"]}
    assert kicked in rows, rows
    assert "3 consecutive broadcast failures" in rows[kicked]["reason"]
    assert rows[kicked]["consecutive_failures"] == 3
    assert demo_run["sim"]["fault_kicked_send_failures"] == 3


def test_the_group_the_owner_removed_the_bot_from_is_deactivated_from_the_update(demo_run: dict[str, Any]) -> None:
    removed = demo_run["world"]["owner_kicked"]
    rows = {g["group_id"]: g for g in demo_run["db"]["deactivated"]}
    assert removed in rows, rows
    assert rows[removed]["reason"].startswith("bot was kicked")
    assert len(rows) == 2


def test_groups_registered_through_updates_and_the_upgrade_followed(demo_run: dict[str, Any]) -> None:
    db, world = demo_run["db"], demo_run["world"]
    assert db["groups"]["total"] == 25
    assert world["upgraded_to"] is not None
    assert world["upgraded_to"] in db["group_ids"]
    assert world["upgraded_from"] not in db["group_ids"]
    assert db["groups"]["member_count_records"] > 25  # the member-count job ran more than once


def test_workers_healthy_and_no_job_failed(demo_run: dict[str, Any]) -> None:
    db = demo_run["db"]
    assert "failed" not in db["jobs_by_status"], db["jobs_by_status"]
    assert sorted(w["bot_name"] for w in db["workers"]) == ["main_worker", "tgms_worker"]
    for worker in db["workers"]:
        assert worker["status"] == "stopped"
        assert worker["jobs_done"] > 0
        assert worker["jobs_failed"] == 0
    assert demo_run["processes"]["died"] == []


def test_nothing_is_left_running(demo_run: dict[str, Any]) -> None:
    procs = demo_run["processes"]
    children = procs["children"]
    assert set(children) == {"sim", "webhook", "worker-main", "worker-tgms"}
    assert children["worker-main"]["exit_code"] == 0
    assert children["worker-tgms"]["exit_code"] == 0
    assert children["sim"]["exit_code"] == 0  # SIGTERM is their normal stop
    assert children["webhook"]["exit_code"] == 0
    assert procs["still_running"] == [] and procs["ports_listening"] == []
    assert procs["postgres"] == "stopped", (procs, demo_run["errors"])
    pids = [c["pid"] for c in children.values()] + [procs["postmaster_pid"]]
    ports = [c["port"] for c in children.values() if c["port"]]
    assert_nothing_left(pids, ports, Path(procs["demo_dir"]))
    assert demo_processes_of(Path(procs["demo_dir"])) == []


def test_summary_text_says_what_happened(demo_run: dict[str, Any]) -> None:
    text = demo_run["_stderr"]
    assert "TGMS demo summary (seed 3, 25 groups" in text
    assert f"{demo_run['db']['join_requests']['approved']} approved" in text
    assert "3 consecutive broadcast failures" in text
    assert "managed under the new id: yes" in text


def test_event_webhooks_reach_the_local_receiver_signed(demo_run: dict[str, Any]) -> None:
    hooks = demo_run["hooks"]
    by_type = hooks["by_type"]
    assert hooks["received"] > 0 and hooks["verified"] == hooks["received"]
    assert by_type.get("group.registered", 0) >= demo_run["groups"]
    for expected in ("group.deactivated", "group.migrated", "broadcast.finished", "join_request.decided"):
        assert by_type.get(expected, 0) >= 1, (expected, by_type)
    assert "event webhooks" in demo_run["_stderr"]
