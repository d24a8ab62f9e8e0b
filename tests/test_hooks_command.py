"""`tgms hooks` as a user runs it: a real subprocess on a real database. The secret is printed by
`add` once and by nothing else; bad input exits 2 naming the flag."""

from __future__ import annotations

import json

import psycopg

from tests.test_admin_command import tgms


def test_add_list_log_replay_pause_remove(db_url: str) -> None:
    refused = tgms(db_url, "hooks", "add", "http://127.0.0.1:9/in")
    assert refused.returncode == 1 and "loopback" in refused.stderr and "TGMS_HOOKS_ALLOW_PRIVATE" in refused.stderr
    added = tgms(db_url, "hooks", "add", "http://93.184.215.14/in", "--events", "group.registered,group.deactivated")
    assert added.returncode == 0, added.stderr
    secret = added.stdout.split("X-TGMS-Signature): ", 1)[1].strip()
    assert secret.startswith("whsec_")

    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO managed_groups (group_id, title) VALUES (-1001, 'Alpha')")
    listing = tgms(db_url, "hooks", "list")
    assert "active" in listing.stdout and "93.184.215.14" in listing.stdout and secret not in listing.stdout
    as_json = json.loads(tgms(db_url, "hooks", "list", "--json").stdout)
    assert as_json[0]["pending"] == 1 and "secret" not in as_json[0]
    log = json.loads(tgms(db_url, "hooks", "log", "--json").stdout)
    assert [(d["event_type"], d["lane"], d["status"]) for d in log] == [("group.registered", "-1001", "pending")]
    replayed = tgms(db_url, "hooks", "replay", str(log[0]["delivery_id"]))
    assert replayed.returncode == 0 and "queued again" in replayed.stdout
    ranged = tgms(db_url, "hooks", "replay", "--subscription", "1", "--since", "1h")
    assert ranged.returncode == 0 and ranged.stdout.startswith("1 event(s)")
    every = tgms(db_url, "hooks", "replay", "--since", "1h", "--until", "2100-01-01T00:00:00")
    assert every.returncode == 0 and every.stdout.startswith("1 event(s)") and "subscription 1" in every.stdout
    assert tgms(db_url, "hooks", "pause", "1").returncode == 0
    assert "paused" in tgms(db_url, "hooks", "list").stdout
    assert tgms(db_url, "hooks", "resume", "1").returncode == 0
    queued = tgms(db_url, "hooks", "test", "1", "--no-wait")
    assert queued.returncode == 0 and "hook.test queued" in queued.stdout
    assert tgms(db_url, "hooks", "remove", "1").returncode == 0
    gone = tgms(db_url, "hooks", "remove", "1")
    assert gone.returncode == 1 and "no subscription 1" in gone.stderr
    every_output = "".join(
        tgms(db_url, *args).stdout for args in (("hooks", "list"), ("hooks", "log"), ("hooks", "list", "--json"))
    )
    assert secret not in every_output


def test_bad_input_exits_2_naming_the_flag(db_url: str) -> None:
    for args, named in (
        (("hooks", "add", "http://93.184.215.14/", "--events", "group.nope"), "--events"),
        (("hooks", "replay"), "DELIVERY_ID"),
        (("hooks", "replay", "7", "--since", "1h"), "not both"),
        (("hooks", "replay", "--subscription", "1", "--since", "yesterday"), "--since"),
        (("hooks", "replay", "x"), "DELIVERY_ID"),
        (("hooks", "pause", "-3"), "SUBSCRIPTION_ID"),
    ):
        result = tgms(db_url, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert named in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
