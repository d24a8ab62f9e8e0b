"""Follow-ups on a sent broadcast end to end: edit, retract (incl. a copy an admin deleted and one
past 48 hours), pin/unpin with and without the right, each through a real TGMS worker and the
simulator, whose control API shows each message's text, history, pinned and deleted state."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import httpx
import psycopg
import pytest

from tests.test_admin_command import tgms
from tgms_tui.backend import followups

from .harness import ADMIN_KEY, Stack


@pytest.fixture
def stack(db_url: str, tmp_path: Any) -> Any:
    from tests.token_guard import register_secret

    from .harness import ADMIN_KEY, WEBHOOK_SECRET

    with Stack(db_url, tmp_path) as s:
        for secret in (s.main_token, s.tgms_token, WEBHOOK_SECRET, ADMIN_KEY):
            register_secret(secret)
        yield s


def _request(stack: Stack, broadcast_id: int, action: str, **kw: Any) -> int:
    async def go() -> int:
        async with await psycopg.AsyncConnection.connect(stack.db_url, autocommit=True) as conn:
            return await followups.request(conn, broadcast_id, action, "test", **kw)

    return asyncio.run(go())


def _outcome(stack: Stack, followup_id: int) -> dict[int, tuple[str, str | None]]:
    rows = stack.sql(
        "SELECT s.chat_id, g.status, g.error FROM broadcast_followup_groups g "
        "JOIN sent_messages s ON s.message_id = g.sent_message_id WHERE g.followup_id = %s",
        (followup_id,),
    )
    return {int(c): (str(st), e) for c, st, e in rows}


def _wait_done(stack: Stack, followup_id: int) -> dict[int, tuple[str, str | None]]:
    def finished() -> bool | None:
        status = stack.scalar(
            "SELECT j.status FROM jobs j JOIN broadcast_followups f ON f.job_id = j.job_id WHERE f.followup_id = %s",
            (followup_id,),
        )
        return True if status == "done" else None

    stack.wait_for(finished, timeout=60, what=f"follow-up {followup_id} done")
    return _outcome(stack, followup_id)


def _message(stack: Stack, chat: int) -> dict[str, Any]:
    rows = [r for r in stack.ctl.messages(chat, sender="bots", include_deleted=True) if r["sent_by_bot"]]
    assert len(rows) == 1, rows
    return rows[0]


def test_edit_retract_pin_unpin(stack: Stack) -> None:
    ctl = stack.ctl
    stack.start_worker("tgms")
    stack.wait_jobs_idle()
    our_bot = [stack.tgms_bot_id]
    chats = [stack.add_group(ctl.create_chat("supergroup", bots=our_bot, members=1)) for _ in range(5)]
    no_pin = chats[4]
    ctl.set_bot(no_pin, stack.tgms_bot_id, action="promote", rights={"can_pin_messages": False})
    broadcast_id = stack.broadcast({"text": "Sale ends *Fryday*", "parse_mode": "Markdown"})
    stack.wait_for(
        lambda: (
            stack.scalar("SELECT status FROM broadcasts WHERE broadcast_id = %s", (broadcast_id,)) == "done" or None
        ),
        timeout=60,
        what="broadcast sent",
    )
    codes = dict(stack.sql("SELECT chat_id, debug_code FROM sent_messages WHERE broadcast_id = %s", (broadcast_id,)))

    # edit: every copy shows the new text with its own debug code; the old one is in the history
    edit = _request(stack, broadcast_id, "edit", changes={"text": "Sale ends *Friday*"})
    assert {s for s, _ in _wait_done(stack, edit).values()} == {"done"}
    for chat in chats:
        row = _message(stack, chat)
        assert row["text"] == f"Sale ends Friday\n\n{codes[chat]}"
        assert row["history"][0]["text"] == f"Sale ends Fryday\n\n{codes[chat]}"
    assert len(stack.calls("editMessageText")) == 5  # each copy edited once

    # pin: refused where the bot lacks the right; unpin after
    pin = _request(stack, broadcast_id, "pin", silent=True)
    pinned = _wait_done(stack, pin)
    assert pinned[no_pin][0] == "failed" and "can_pin_messages" in str(pinned[no_pin][1])
    assert all(pinned[c][0] == "done" and _message(stack, c)["pinned"] for c in chats[:4])
    cli = tgms(stack.db_url, "broadcast", "unpin", str(broadcast_id), "--json")
    assert cli.returncode == 0, cli.stderr
    unpin = int(json.loads(cli.stdout)["followup_id"])
    assert all(_wait_done(stack, unpin)[c][0] == "done" and not _message(stack, c)["pinned"] for c in chats[:4])

    # retract: one copy deleted by an admin before, one older than 48 hours (reported, never attempted)
    admin_deleted, old = chats[0], chats[1]
    ctl.delete_message(admin_deleted, _message(stack, admin_deleted)["message_id"])
    ctl.age_messages(48 * 3600 + 60, chat_id=old)
    stack.sql(
        "UPDATE sent_messages SET sent_at = sent_at - interval '48 hours 1 minute' WHERE chat_id = %s AND "
        "broadcast_id = %s",
        (old, broadcast_id),
    )
    cli = tgms(stack.db_url, "broadcast", "retract", str(broadcast_id), "--json")  # the CLI entry point
    assert cli.returncode == 0, cli.stderr
    retract = int(json.loads(cli.stdout)["followup_id"])
    result = _wait_done(stack, retract)
    assert result[old] == ("skipped", followups.TOO_OLD)
    assert {result[c][0] for c in chats if c != old} == {"done"}
    deletes = stack.calls("deleteMessages")
    assert sorted(c["chat_id"] for c in deletes) == sorted(c for c in chats if c != old)  # once each, not the old
    for chat in chats:
        assert _message(stack, chat)["deleted"] is (chat != old)
    shown = tgms(stack.db_url, "broadcast", "show", str(broadcast_id))
    assert f"retract #{retract}: 4 done, 1 skipped" in shown.stdout, shown.stdout
    # a broadcast not started yet is edited as before, not followed up
    later = tgms(stack.db_url, "broadcast", "--text", "later", "--send-at", "+2h")
    assert later.returncode == 0, later.stderr
    later_id = json.loads(later.stdout)["broadcast_id"]
    assert tgms(stack.db_url, "broadcast", "edit", str(later_id), "--text", "later!").returncode == 0
    assert stack.scalar("SELECT text FROM broadcasts WHERE broadcast_id = %s", (later_id,)) == "later!"
    assert tgms(stack.db_url, "broadcast", "retract", str(later_id)).returncode == 1  # nothing sent yet


def test_buttons_go_with_every_copy_and_stay_on_edit_and_a_test_send_reaches_only_the_test_chat(
    stack: Stack,
) -> None:
    """Through the admin API, a worker and the simulator: the inline buttons are each copy's
    reply_markup and an API follow-up edit keeps them; a test send (`tgms broadcast --test`, the API's
    `"test": true`) reaches the test chat exactly as a group gets it, and no group."""
    ctl = stack.ctl
    stack.start_worker("tgms")
    our_bot = [stack.tgms_bot_id]
    chats = [stack.add_group(ctl.create_chat("supergroup", bots=our_bot, members=1)) for _ in range(3)]
    test_chat = int(ctl.create_chat("supergroup", bots=our_bot, members=1)["id"])
    rows = [[{"text": "Shop", "url": "https://example.org/shop"}], [{"text": "Chat", "url": "tg://resolve?domain=x"}]]
    body = {"text": "Sale *now*", "parse_mode": "Markdown", "buttons": rows}
    keys = {"x-api-key": ADMIN_KEY}
    assert stack.webhook_url is not None

    # test sends first: the API with a named chat, the CLI with TGMS_TEST_CHAT_ID
    api_test = httpx.post(f"{stack.webhook_url}/api/tgms/send", json={**body, "test": True, "test_chat_id": test_chat},
                          headers=keys, timeout=10)  # fmt: skip
    assert api_test.status_code == 200, api_test.text
    cli = subprocess.run(
        [sys.executable, "-m", "tgms_tui.commands.cli", "broadcast", "--text", "Sale *now*", "--parse-mode",
         "Markdown", "--button", "Shop=https://example.org/shop", "--button", "Chat=tg://resolve?domain=x", "--test"],
        env=stack.env(TGMS_TEST_CHAT_ID=str(test_chat)), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert "test send delivered" in cli.stderr
    code = api_test.json()["debug_code"]
    tests = [r for r in ctl.messages(test_chat, sender="bots") if r["sent_by_bot"]]
    assert len(tests) == 2
    assert tests[0]["text"] == f"Sale now\n\n{code}" and tests[0]["reply_markup"] == {"inline_keyboard": rows}
    assert stack.scalar("SELECT count(*) FROM broadcasts") == 0
    assert stack.scalar("SELECT count(*) FROM sent_messages") == 0
    assert all(not ctl.messages(c, sender="bots") for c in chats)

    # the broadcast itself: its first group's code is the one the test showed
    broadcast_id = stack.broadcast(body)
    stack.wait_for(
        lambda: (
            stack.scalar("SELECT status FROM broadcasts WHERE broadcast_id = %s", (broadcast_id,)) == "done" or None
        ),
        timeout=60,
        what="broadcast sent",
    )
    assert stack.scalar("SELECT min(debug_code) FROM sent_messages WHERE broadcast_id = %s", (broadcast_id,)) in (
        code,
        f"B{broadcast_id}G1",
    )
    for chat in chats:
        assert _message(stack, chat)["reply_markup"] == {"inline_keyboard": rows}
    edit = httpx.post(f"{stack.webhook_url}/api/tgms/broadcasts/{broadcast_id}/edit", json={"text": "Sale *over*"},
                      headers={**keys, "Idempotency-Key": "edit-1"}, timeout=10)  # fmt: skip
    assert edit.status_code == 200, edit.text
    assert {s for s, _ in _wait_done(stack, int(edit.json()["followup_id"])).values()} == {"done"}
    for chat in chats:
        row = _message(stack, chat)
        assert row["text"].startswith("Sale over\n\n") and row["reply_markup"] == {"inline_keyboard": rows}
    shown = httpx.get(f"{stack.webhook_url}/api/tgms/broadcasts/{broadcast_id}", headers=keys, timeout=10).json()
    assert {d["chat_id"]: d["status"] for d in shown["followups"][0]["deliveries"]} == {c: "done" for c in chats}
