"""`tgms groups` as an operator runs it: real subprocesses, a real database, the simulator as Telegram.

`add` and reactivating ask Telegram whether the group-management bot can manage the chat and refuse,
with the reason and exit 2, when it cannot; `add` stores the chat's real title and type.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg

from telegram_sim.server import SimServer
from tests.support import simulator_fixtures

ROOT = Path(__file__).resolve().parents[1]
RIGHTS = {"can_invite_users": True, "can_restrict_members": True}

sim_server, sim = simulator_fixtures(bots=2, seed=5)


def tgms(sim: SimServer, db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TGMS_", "BOT_TOKEN", "DATABASE_URL"))}
    env.update(
        DATABASE_URL=db_url,
        BOT_TOKEN=sim.bots[0].token,
        TGMS_BOT_TOKEN=sim.bots[1].token,
        TELEGRAM_API_BASE=sim.base_url,
    )
    return subprocess.run(
        [sys.executable, "-m", "tgms_tui.commands.cli", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def chat(sim: SimServer, title: str, chat_type: str = "supergroup", **bot: object) -> int:
    tgms_bot = sim.bots[1].id
    spec = bot or {"status": "administrator", "rights": RIGHTS}
    return int(sim.control.create_chat(chat_type, title, bots={str(tgms_bot): spec})["id"])


def stored(db_url: str) -> dict[int, tuple[str, str, bool, bool | None]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT group_id, title, chat_type, is_active, bot_can_invite FROM managed_groups")
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


def test_add_looks_the_chat_up_and_stores_its_real_title_and_type(sim: SimServer, db_url: str) -> None:
    group = chat(sim, "Real Title")
    basic = chat(sim, "Basic One", "group")
    added = tgms(sim, db_url, "groups", "add", str(group))
    assert added.returncode == 0, added.stderr
    assert f"group {group} 'Real Title' (supergroup) registered" in added.stdout
    assert tgms(sim, db_url, "groups", "add", str(basic), "--title", "My name", "--phase", "monitoring").returncode == 0
    assert stored(db_url) == {
        group: ("Real Title", "supergroup", True, True),
        basic: ("My name", "group", True, True),
    }
    calls = [c["method"] for c in sim.control.calls(chat_id=group)]
    assert "getChat" in calls and "getChatMember" in calls


def test_add_refuses_what_the_bot_cannot_manage_with_the_reason(sim: SimServer, db_url: str) -> None:
    member = chat(sim, "Plain member", status="member")
    no_invite = chat(sim, "No invite", status="administrator", rights={"can_restrict_members": True})
    kicked = chat(sim, "Kicked")
    sim.control.kick_bot(kicked, sim.bots[1].id)
    channel = chat(sim, "A channel", "channel")
    user = sim.control.create_user("Alice")["id"]
    sim.control.private_message(user, "/start", bot=sim.bots[1].id)
    cases = {
        "-1009999999999": "no such chat for this bot",
        str(member): "not an administrator",
        str(no_invite): "without 'Invite Users via Link'",
        str(kicked): "not in the",
        str(channel): "channel",
        str(user): "private chat",
    }
    for group_id, reason in cases.items():
        refused = tgms(sim, db_url, "groups", "add", group_id)
        assert refused.returncode == 2, (group_id, refused.stdout, refused.stderr)
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"tgms groups: add {group_id} refused:"), refused.stderr
        assert reason in lines[0], (group_id, lines)
    assert stored(db_url) == {}


def test_set_title_remove_and_json_listing(sim: SimServer, db_url: str) -> None:
    group, other = chat(sim, "First"), chat(sim, "Second")
    for g in (group, other):
        assert tgms(sim, db_url, "groups", "add", str(g)).returncode == 0
    assert tgms(sim, db_url, "groups", "set", str(group), "--title", "Renamed").returncode == 0
    with psycopg.connect(db_url) as conn:  # a delivery recorded for the group: history to keep
        conn.execute(
            "INSERT INTO sent_messages (chat_id, debug_code, status) VALUES (%s, 'dbg-remove-1', 'sent')", (group,)
        )

    listing = tgms(sim, db_url, "groups", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    rows = {r["group_id"]: r for r in json.loads(listing.stdout)}
    assert rows[group]["title"] == "Renamed" and rows[group]["is_active"] is True
    assert set(rows[other]) >= {"title", "chat_type", "phase", "is_active", "member_count", "deactivated_reason"}

    unconfirmed = tgms(sim, db_url, "groups", "remove", str(group))  # no terminal to ask on, no --yes
    assert unconfirmed.returncode == 2 and "not confirmed" in unconfirmed.stderr
    assert group in stored(db_url)
    removed = tgms(sim, db_url, "groups", "remove", str(group), "--yes")
    assert removed.returncode == 0, removed.stderr
    assert "kept" in removed.stdout
    assert set(stored(db_url)) == {other}
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM sent_messages WHERE chat_id = %s", (group,)).fetchone() == (1,)
    again = tgms(sim, db_url, "groups", "remove", str(group), "--yes")
    assert again.returncode == 1 and f"no managed group {group}" in again.stderr


def test_reactivating_checks_the_bots_rights(sim: SimServer, db_url: str) -> None:
    group = chat(sim, "Comes and goes")
    assert tgms(sim, db_url, "groups", "add", str(group)).returncode == 0
    assert tgms(sim, db_url, "groups", "set", str(group), "--active", "no").returncode == 0
    sim.control.demote_bot(group, sim.bots[1].id)

    refused = tgms(sim, db_url, "groups", "set", str(group), "--active", "yes")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "not an administrator" in refused.stderr and "--force" in refused.stderr
    assert stored(db_url)[group][2] is False

    forced = tgms(sim, db_url, "groups", "set", str(group), "--active", "yes", "--force")
    assert forced.returncode == 0 and "warning: reactivating" in forced.stderr
    assert stored(db_url)[group][2] is True

    assert tgms(sim, db_url, "groups", "set", str(group), "--active", "no").returncode == 0
    sim.control.promote_bot(group, sim.bots[1].id, RIGHTS)
    fine = tgms(sim, db_url, "groups", "set", str(group), "--active", "yes")
    assert fine.returncode == 0 and fine.stderr == ""
    assert stored(db_url)[group][2] is True


def test_help_lists_every_action_and_version(sim: SimServer, db_url: str) -> None:
    helped = tgms(sim, db_url, "groups", "--help")
    assert helped.returncode == 0
    for action in ("list", "add", "set", "remove", "release"):
        assert action in helped.stdout
    assert "list or add" not in helped.stdout
    top = " ".join(tgms(sim, db_url, "--help").stdout.split())  # argparse wraps to the terminal's width
    assert "list, add (checked with Telegram), set, remove, release" in top
    version = tgms(sim, db_url, "--version")
    assert version.returncode == 0 and version.stdout.startswith("tgms ") and version.stdout.strip() != "tgms"
