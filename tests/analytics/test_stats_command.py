"""`tgms stats` as an operator runs it: a real subprocess on a real database with a known history."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from .history import NOW, A, seed_history

ROOT = Path(__file__).resolve().parents[2]
AT = NOW.isoformat()


def tgms(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TGMS_", "BOT_TOKEN", "DATABASE_URL"))}
    env["DATABASE_URL"] = db_url
    return subprocess.run(
        [sys.executable, "-m", "tgms_tui.commands.cli", "stats", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_stats_json_csv_and_table_for_a_group(db_url: str) -> None:
    seed_history(db_url)
    done = tgms(db_url, "--group", str(A), "--window", "30d", "--json", "--at", AT)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["group_id"] == A and doc["window"] == "30d" and doc["title"] == "Alpha <b>[bold]</b>"
    assert doc["totals"] == {
        "members": 120,
        "members_change": 20,
        "joins_approved": 3,
        "joins_declined": 1,
        "joins_other": 1,
        "deliveries_sent": 2,
        "deliveries_failed": 0,
        "active_members": 3,
    }
    march9 = next(b for b in doc["buckets"] if b["bucket_start"].startswith("2026-03-09"))
    assert (march9["joins_approved"], march9["joins_declined"], march9["active_members"]) == (3, 1, 7)

    done = tgms(db_url, "--group", str(A), "--window", "24h", "--csv", "--at", AT)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert len(rows) == 24 and rows[-1]["members"] == "120" and rows[-1]["joins_other"] == "1"
    assert rows[0]["members"] == "110" and rows[0]["active_members"] == "7"  # March 9's snapshot

    done = tgms(db_url, "--group", str(A), "--at", AT)
    assert done.returncode == 0, done.stderr
    assert "'Alpha <b>[bold]</b>'" in done.stdout and "last 7d per 6 hours" in done.stdout
    assert "joins approved 3, declined 1, other 1" in done.stdout


def test_stats_fleet_without_group(db_url: str) -> None:
    seed_history(db_url)
    done = tgms(db_url, "--window", "30d", "--json", "--at", AT)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    # no rollup yet: the live tail covers the last 48 h only (approvals of March 9: A's 3 and B's 1)
    assert doc["scope"] == "fleet" and doc["group_id"] is None
    assert doc["totals"]["joins_approved"] == 4 and doc["totals"]["members"] == 120


def test_stats_bad_input_names_the_flag(db_url: str) -> None:
    done = tgms(db_url, "--group", "-5", "--json")
    assert done.returncode == 2 and "--group -5" in done.stdout and not done.stderr.strip()
    done = tgms(db_url, "--window", "1y")
    assert done.returncode == 2 and "--window" in done.stderr
    done = tgms(db_url, "--at", "yesterday")
    assert done.returncode == 2 and "--at" in done.stderr
