"""`tgms broadcast send|list|show|cancel|edit` as a user types it: real subprocesses, a real database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg

from tests.test_admin_command import tgms

ALPHA, BETA, GAMMA = -1001173879092, -1001270515404, -1001300000003


def seed(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO managed_groups (group_id, title, phase, is_active, final_message_allowed) VALUES "
            "(%s, 'Alpha', 'growth', true, false), (%s, 'Beta', 'growth', true, false), "
            "(%s, 'Gamma', 'growth', false, false)",
            (ALPHA, BETA, GAMMA),
        )


def rows(db_url: str, sql: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(db_url) as conn:
        return [tuple(r) for r in conn.execute(sql, params).fetchall()]


def test_negative_group_ids_as_users_type_them(db_url: str) -> None:
    seed(db_url)
    for args in (
        ("--groups", f"{ALPHA},{BETA}"),
        (f"--groups={ALPHA},{BETA}",),
        ("--group", str(ALPHA), "--group", str(BETA)),
    ):
        for form in (("broadcast",), ("broadcast", "send")):
            sent = tgms(db_url, *form, "--text", "hi", *args)
            assert sent.returncode == 0, (args, sent.stderr)
            assert json.loads(sent.stdout)["groups"] == 2
    targets = rows(db_url, "SELECT DISTINCT target FROM broadcasts")
    assert targets == [({"kind": "groups", "group_ids": [ALPHA, BETA]},)]
    assert rows(db_url, "SELECT DISTINCT created_by LIKE 'cli%%' FROM broadcasts") == [(True,)]


def test_paid_broadcast_says_what_it_can_cost(db_url: str) -> None:
    seed(db_url)
    sent = tgms(db_url, "broadcast", "--text", "hi", "--paid")
    assert sent.returncode == 0, sent.stderr
    reply = json.loads(sent.stdout)
    assert (reply["groups"], reply["paid"], reply["estimated_stars"]) == (2, True, 0.2)
    free = json.loads(tgms(db_url, "broadcast", "--text", "hi").stdout)
    assert "paid" not in free and "estimated_stars" not in free
    assert rows(db_url, "SELECT paid FROM broadcasts ORDER BY broadcast_id") == [(True,), (False,)]
    shown = tgms(db_url, "broadcast", "show", str(reply["broadcast_id"]))
    assert "allow_paid_broadcast; up to 0.2 Telegram Stars" in shown.stdout, shown.stdout
    listed = tgms(db_url, "broadcast", "show", str(reply["broadcast_id"]), "--json")
    assert json.loads(listed.stdout)["paid"] is True


def test_refusals_exit_2_naming_the_field_and_store_nothing(db_url: str) -> None:
    seed(db_url)
    too_long = tgms(db_url, "broadcast", "--text", "x" * 4095)
    assert too_long.returncode == 2
    assert too_long.stderr.startswith("tgms: broadcast: text: message is too long with the debug code appended")
    caption = tgms(db_url, "broadcast", "--photo-url", "https://example.org/p.jpg", "--caption", "c" * 1024)
    assert caption.returncode == 2 and caption.stderr.startswith("tgms: broadcast: caption:")
    unknown = tgms(db_url, "broadcast", "--text", "hi", "--groups", f"{ALPHA},-1009999999999")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "tgms: broadcast: target: not managed groups: -1009999999999"
    inactive = tgms(db_url, "broadcast", "--text", "hi", "--group", str(GAMMA))
    assert inactive.returncode == 2 and str(GAMMA) in inactive.stderr and "inactive" in inactive.stderr
    garbage = tgms(db_url, "broadcast", "--text", "hi", "--groups", "-100,abc")
    assert garbage.returncode == 2 and "comma-separated" in garbage.stderr
    bad_time = tgms(db_url, "broadcast", "--text", "hi", "--send-at", "teatime")
    assert bad_time.returncode == 2 and "send_at" in bad_time.stderr and "+30m" in bad_time.stderr
    assert rows(db_url, "SELECT count(*) FROM broadcasts") == [(0,)]
    assert rows(db_url, "SELECT count(*) FROM jobs") == [(0,)]


def test_send_at_takes_what_the_composer_takes(db_url: str) -> None:
    seed(db_url)
    before = datetime.now(UTC)
    for when in ("+30m", "18:00", "2099-05-01 09:00", "2099-05-01T09:00:00+00:00"):
        sent = tgms(db_url, "broadcast", "--text", "later", "--send-at", when)
        assert sent.returncode == 0, (when, sent.stderr)
    send_ats = [r[0] for r in rows(db_url, "SELECT send_at FROM broadcasts ORDER BY broadcast_id")]
    assert all(isinstance(t, datetime) and t > before for t in send_ats)
    first, last = send_ats[0], send_ats[-1]
    assert isinstance(first, datetime) and isinstance(last, datetime)
    assert abs(first - before - timedelta(minutes=30)) < timedelta(minutes=1)
    assert last == datetime(2099, 5, 1, 9, tzinfo=UTC)


def test_list_show_edit_and_cancel(db_url: str) -> None:
    seed(db_url)
    first = json.loads(tgms(db_url, "broadcast", "--text", "first").stdout)["broadcast_id"]
    later = json.loads(tgms(db_url, "broadcast", "--text", "later", "--send-at", "+1d").stdout)["broadcast_id"]
    with psycopg.connect(db_url, autocommit=True) as conn:  # as the sender leaves a started broadcast
        conn.execute(
            "INSERT INTO sent_messages (broadcast_id, chat_id, debug_code, status, telegram_message_id) VALUES "
            "(%s, %s, %s, 'sent', 501), (%s, %s, %s, 'failed', NULL)",
            (first, ALPHA, f"B{first}G1", first, BETA, f"B{first}G2"),
        )
        conn.execute("UPDATE broadcasts SET status = 'done', finished_at = now() WHERE broadcast_id = %s", (first,))

    listing = tgms(db_url, "broadcast", "list")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert "⚠ 1 failed" in next(line for line in lines if line.strip().startswith(str(first)))
    assert "◷ scheduled" in next(line for line in lines if line.strip().startswith(str(later)))
    assert lines[-1] == "2 broadcast(s)"
    as_json = json.loads(tgms(db_url, "broadcast", "list", "--json", "--limit", "1").stdout)
    assert [b["broadcast_id"] for b in as_json["broadcasts"]] == [later] and as_json["next_before"] == later

    shown = json.loads(tgms(db_url, "broadcast", "show", str(first), "--json").stdout)
    assert shown["counts"]["sent"] == 1 and shown["counts"]["failed"] == 1
    assert {(d["chat_id"], d["debug_code"], d["telegram_message_id"]) for d in shown["deliveries"]} == {
        (ALPHA, f"B{first}G1", 501),
        (BETA, f"B{first}G2", None),
    }
    text = tgms(db_url, "broadcast", "show", str(first)).stdout
    assert f"B{first}G1" in text and "⚠ 1 failed" in text
    missing = tgms(db_url, "broadcast", "show", "999")
    assert missing.returncode == 1 and missing.stderr.strip() == "tgms: broadcast: no broadcast 999"

    edited = tgms(db_url, "broadcast", "edit", str(later), "--text", "later, edited", "--send-at", "+2d")
    assert edited.returncode == 0, edited.stderr
    assert rows(db_url, "SELECT text, edited_at IS NOT NULL FROM broadcasts WHERE broadcast_id = %s", later) == [
        ("later, edited", True)
    ]
    assert tgms(db_url, "broadcast", "edit", str(later), "--text", "x" * 4095).returncode == 2
    # a started broadcast: its copies are edited by a follow-up job; its send time can no longer change
    followed = tgms(db_url, "broadcast", "edit", str(first), "--text", "edited after sending")
    assert followed.returncode == 0 and "edit #" in followed.stdout, followed.stderr
    assert tgms(db_url, "broadcast", "edit", str(first), "--send-at", "+2d").returncode == 2

    cancelled = tgms(db_url, "broadcast", "cancel", str(later))
    assert cancelled.returncode == 0, cancelled.stderr
    assert "nothing was sent" in cancelled.stdout
    assert rows(
        db_url, "SELECT b.status, j.status FROM broadcasts b JOIN jobs j USING (job_id) WHERE broadcast_id = %s", later
    ) == [("cancelled", "cancelled")]
    again = tgms(db_url, "broadcast", "cancel", str(later))
    assert again.returncode == 1 and "already cancelled" in again.stderr
    assert tgms(db_url, "broadcast", "cancel", str(first)).returncode == 1  # done: nothing to cancel


def test_buttons_and_test_sends_from_the_command_line(db_url: str) -> None:
    seed(db_url)
    for args, words in [
        (("--button", "no url here"), "buttons: expected TEXT=URL"),
        (("--button", "Evil=javascript:alert(1)"), "buttons: row 1, button 1: only http://, https:// and tg://"),
        (("--test",), "test_chat_id: no test chat: give test_chat_id or set TGMS_TEST_CHAT_ID"),
        (("--test-chat", "-100123"), "test_chat_id: --test-chat goes with --test"),
        (("--test", "--test-chat", "abc"), "test_chat_id: expected a chat id"),
    ]:
        refused = tgms(db_url, "broadcast", "--text", "hi", *args)
        assert refused.returncode == 2, (args, refused.stdout, refused.stderr)
        assert f"tgms: broadcast: {words}" in refused.stderr, (args, refused.stderr)
    assert rows(db_url, "SELECT count(*) FROM broadcasts") == [(0,)]
    assert rows(db_url, "SELECT count(*) FROM broadcast_test_sends") == [(0,)]

    sent = tgms(db_url, "broadcast", "--text", "hi", "--button", "Shop=https://example.org/s?a=1",
                "--button", "Docs=https://example.org/d | Chat=tg://resolve?domain=x")  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    broadcast_id = json.loads(sent.stdout)["broadcast_id"]
    shown = tgms(db_url, "broadcast", "show", str(broadcast_id), "--json")
    assert json.loads(shown.stdout)["buttons"] == [
        [{"text": "Shop", "url": "https://example.org/s?a=1"}],
        [{"text": "Docs", "url": "https://example.org/d"}, {"text": "Chat", "url": "tg://resolve?domain=x"}],
    ]
    assert "[ Docs ] [ Chat ]" in tgms(db_url, "broadcast", "show", str(broadcast_id)).stdout
    # a test send is queued (no worker runs here: the command says so) and stores no broadcast
    test = tgms(db_url, "broadcast", "--text", "hi", "--test", "--test-chat", "-100777", "--test-wait", "0.5")
    assert test.returncode == 0, test.stderr
    assert json.loads(test.stdout)["message"] == "Test send enqueued"
    assert "is queued; is a TGMS worker running?" in test.stderr
    assert rows(db_url, "SELECT count(*) FROM broadcasts") == [(1,)]
    assert rows(db_url, "SELECT chat_id, status FROM broadcast_test_sends") == [(-100777, "pending")]
