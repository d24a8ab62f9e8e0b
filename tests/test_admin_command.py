"""`tgms groups` and `tgms broadcast` as a user runs them: real subprocesses on a real database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]


def tgms(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TGMS_", "BOT_TOKEN", "DATABASE_URL"))}
    env["DATABASE_URL"] = db_url
    return subprocess.run(
        [sys.executable, "-m", "tgms_tui.commands.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_groups_add_set_list_and_broadcast(db_url: str) -> None:
    # `groups add` asks Telegram (tests/test_groups_command.py); here the groups are seeded directly.
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO managed_groups (group_id, title, phase) VALUES (-1001, 'Alpha', 'growth'), "
            "(-1002, 'Beta', 'monitoring')"
        )
    assert tgms(db_url, "groups", "set", "-1002", "--active", "no").returncode == 0
    missing = tgms(db_url, "groups", "set", "-9", "--active", "no")
    assert missing.returncode == 1 and "no managed group -9" in missing.stderr
    listing = tgms(db_url, "groups", "list").stdout
    assert "Alpha" in listing and "Beta" in listing and "2 group(s), 1 active" in listing

    sent = tgms(db_url, "broadcast", "--text", "Hello *all*", "--parse-mode", "Markdown")
    assert sent.returncode == 0, sent.stderr
    reply = json.loads(sent.stdout)
    assert reply["status"] == "ok" and reply["groups"] == 1
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT b.text, b.parse_mode, b.target, j.job_type, j.payload FROM broadcasts b "
            "JOIN jobs j ON j.job_id = b.job_id WHERE b.broadcast_id = %s",
            (reply["broadcast_id"],),
        ).fetchone()
    assert row == (
        "Hello *all*",
        "Markdown",
        {"kind": "all"},
        "tgms_send_to_groups",
        {"broadcast_id": reply["broadcast_id"]},
    )


def test_bad_broadcast_names_the_field_and_writes_nothing(db_url: str) -> None:
    bad = tgms(db_url, "broadcast", "--photo-url", "ftp://example.com/x.png", "--caption", "hi")
    assert bad.returncode == 2 and bad.stderr.startswith("tgms: broadcast: photo_url:")
    long_caption = tgms(db_url, "broadcast", "--photo-url", "https://example.com/x.png", "--caption", "x" * 1025)
    assert long_caption.returncode == 2 and "caption" in long_caption.stderr
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM broadcasts").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM jobs").fetchone() == (0,)


def test_config_error_is_one_line_naming_the_variable(db_url: str) -> None:
    env_bad = tgms(db_url, "groups", "list")
    assert env_bad.returncode == 0
    proc = subprocess.run(
        [sys.executable, "-m", "tgms_tui.commands.cli", "groups", "list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "DATABASE_URL": db_url, "TGMS_RATE_PER_SECOND": "fast"},
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "tgms: configuration error: TGMS_RATE_PER_SECOND: expected a float, got 'fast'"
