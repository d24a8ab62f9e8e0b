"""Broadcasts end to end: admin API → tgms_send_to_groups (two TGMS worker processes) → simulator.

The simulator enforces Telegram's flood limits here; our limiter is configured below them, and 429s
are injected on purpose. Every group's outcome is checked against what the simulator recorded.
"""

from __future__ import annotations

from typing import Any

import pytest

from telegram_sim.config import SimConfig

from .harness import Stack

SEND = "sendMessage"


@pytest.fixture
def stack(db_url: str, tmp_path: Any) -> Any:
    from tests.token_guard import register_secret

    from .harness import ADMIN_KEY, WEBHOOK_SECRET

    with Stack(db_url, tmp_path, sim_config=SimConfig(enforce_flood_limits=True),
               env={"TGMS_RATE_PER_SECOND": "25", "TGMS_GROUP_MESSAGES_PER_MINUTE": "20"}) as s:  # fmt: skip
        for secret in (s.main_token, s.tgms_token, WEBHOOK_SECRET, ADMIN_KEY):
            register_secret(secret)
        yield s


def _rows(stack: Stack, broadcast_id: int) -> dict[int, dict[str, Any]]:
    rows = stack.sql("SELECT chat_id, status, error, debug_code, telegram_message_id, sent_at "
                     "FROM sent_messages WHERE broadcast_id = %s", (broadcast_id,))  # fmt: skip
    keys = ("status", "error", "debug_code", "telegram_message_id", "sent_at")
    return {int(r[0]): dict(zip(keys, r[1:], strict=True)) for r in rows}


def _groups(stack: Stack) -> dict[int, tuple[int, bool, str | None]]:
    rows = stack.sql("SELECT group_id, consecutive_failures, is_active, deactivated_reason FROM managed_groups")
    return {int(g): (int(f), bool(a), r) for g, f, a, r in rows}


def _wait_finished(stack: Stack, broadcast_id: int, timeout: float = 60) -> str:
    def finished() -> str | None:
        status = stack.scalar("SELECT status FROM broadcasts WHERE broadcast_id = %s", (broadcast_id,))
        return None if status in ("pending", "running") else str(status)

    return str(stack.wait_for(finished, timeout=timeout, what=f"broadcast {broadcast_id} finished"))


def test_broadcast_to_50_groups_with_kicks_a_migration_and_429s(stack: Stack) -> None:
    ctl = stack.ctl
    # Started first, so that their periodic member-count run (which would also notice the migration)
    # is over before the groups exist: the broadcast is the one to meet the upgraded group.
    stack.start_worker("tgms")
    stack.start_worker("tgms")
    stack.wait_jobs_idle()
    tgms = [stack.tgms_bot_id]
    expected: dict[int, str] = {}  # chat id -> sent_messages status
    failures: dict[int, int] = {}  # chat id -> consecutive_failures afterwards
    deactivated: set[int] = set()

    def group(kind: str = "supergroup", *, prior: int = 0, **columns: Any) -> int:
        chat = ctl.create_chat(kind, bots=tgms, members=1)
        return stack.add_group(chat, consecutive_failures=prior, **columns)

    for i in range(34):
        gid = group(prior=2 if i < 5 else 0)  # a success resets earlier failures
        expected[gid], failures[gid] = "sent", 0
    for prior in (2, 2, 2, 0, 0, 0):  # the bot was kicked: counted; deactivated when reaching 3
        gid = group(prior=prior)
        ctl.kick_bot(gid, stack.tgms_bot_id)
        expected[gid], failures[gid] = "failed", prior + 1
        if prior + 1 >= 3:
            deactivated.add(gid)
    gid = group(prior=1)  # the bot left: "not a member"
    ctl.set_bot(gid, stack.tgms_bot_id, action="remove")
    expected[gid], failures[gid] = "failed", 2
    deleted = group("group", prior=2)  # basic group deleted
    ctl.delete_chat(deleted)
    expected[deleted], failures[deleted] = "failed", 3
    deactivated.add(deleted)
    old_id = group("group", prior=1)  # upgraded to a supergroup before the broadcast
    new_id = int(ctl.upgrade(old_id)["id"])
    expected[new_id], failures[new_id] = "sent", 0  # migration is never a failure; success resets
    flooded = [group(), group()]
    for gid in flooded:
        ctl.add_fault("flood", method=SEND, chat_id=gid, retry_after=1, times=1)
        expected[gid], failures[gid] = "sent", 0
    gateway = group(prior=1)  # a 502 page from a proxy: Telegram may have delivered it
    ctl.add_fault("status", method=SEND, chat_id=gateway, status=502, times=1)
    expected[gateway], failures[gateway] = "ambiguous", 1
    for _ in range(4):  # more plain groups: 50 targets in all
        gid = group()
        expected[gid], failures[gid] = "sent", 0
    assert len(expected) == 50
    inactive = group(is_active=False, final_message_allowed=True, deactivated_reason="deactivated by an operator")
    failures[inactive] = 0

    text = "Weekly *news*: [site](https://example.org) \\- see you\\!"
    broadcast_id = stack.broadcast({"text": text, "parse_mode": "MarkdownV2"})
    assert _wait_finished(stack, broadcast_id) == "done"

    rows = _rows(stack, broadcast_id)
    assert {chat: row["status"] for chat, row in rows.items()} == expected
    sends = stack.calls(SEND)
    ok_per_chat: dict[int, int] = {}
    for call in sends:
        if call["ok"]:
            ok_per_chat[call["chat_id"]] = ok_per_chat.get(call["chat_id"], 0) + 1
    assert ok_per_chat == {chat: 1 for chat, status in expected.items() if status == "sent"}  # no duplicates
    assert inactive not in rows and all(c["chat_id"] != inactive for c in sends)

    # What arrived: the text with the row's own debug code on a line of its own, valid MarkdownV2.
    codes = {row["debug_code"] for row in rows.values()}
    assert len(codes) == 50
    for call in sends:
        if call["ok"]:
            row = rows[call["chat_id"]]
            assert call["params"]["text"] == f"{text}\n\n{row['debug_code']}"
            assert call["result"]["message_id"] == row["telegram_message_id"] and row["sent_at"] is not None
            assert call["result"]["text"].endswith(row["debug_code"])

    # 429: waited and retried, never counted. Migration: old id refused once, then the new id got it.
    for gid in flooded:
        assert [c["error_code"] for c in sends if c["chat_id"] == gid] == [429, None]
    assert [c["ok"] for c in sends if c["chat_id"] == old_id] == [False]
    groups = _groups(stack)
    assert old_id not in groups and new_id in groups
    assert {gid: groups[gid][0] for gid in failures} == failures
    assert {gid for gid, (_, active, _) in groups.items() if not active} == deactivated | {inactive}
    for gid in deactivated:
        assert "3 consecutive broadcast failures" in str(groups[gid][2])
    assert "may have been delivered" in str(rows[gateway]["error"])
    started, finished = stack.sql("SELECT started_at, finished_at FROM broadcasts WHERE broadcast_id = %s",
                                  (broadcast_id,))[0]  # fmt: skip
    assert started is not None and finished is not None and finished >= started


def test_photo_final_and_content_error_broadcasts(stack: Stack) -> None:
    ctl = stack.ctl
    stack.start_worker("tgms", TGMS_GROUP_DELAY_SECONDS="1")
    stack.wait_jobs_idle()
    tgms = [stack.tgms_bot_id]
    active = [stack.add_group(ctl.create_chat("supergroup", bots=tgms)) for _ in range(3)]
    final_ok = stack.add_group(ctl.create_chat("supergroup", bots=tgms), is_active=False, final_message_allowed=True)
    final_no = stack.add_group(ctl.create_chat("supergroup", bots=tgms), is_active=False)

    caption = "*Sale* ends _today_\\."
    photo = stack.broadcast({"photo_url": "https://example.org/p.jpg", "caption": caption,
                             "parse_mode": "MarkdownV2"})  # fmt: skip
    assert _wait_finished(stack, photo) == "done"
    calls = stack.calls("sendPhoto", ok=True)
    rows = _rows(stack, photo)
    assert sorted(c["chat_id"] for c in calls) == sorted(active)
    for call in calls:
        assert call["params"]["caption"] == f"{caption}\n\n{rows[call['chat_id']]['debug_code']}"
        assert call["result"]["caption"] == f"Sale ends today.\n\n{rows[call['chat_id']]['debug_code']}"
    # The 3 s between groups (1 s here) paces one broadcast, whatever the bot's rate allows: the
    # broadcast's pacing bucket exists with that rate, and the sends are spread accordingly (arrival
    # times also carry each call's own latency, hence the slack).
    pace = stack.scalar("SELECT refill_per_sec FROM rate_buckets WHERE key = %s", (f"pace:broadcast:{photo}",))
    assert pace == pytest.approx(1.0)
    times = sorted(c["at"] for c in calls)
    assert times[-1] - times[0] >= 1.0, times  # 2 s nominal for 3 groups

    final = stack.broadcast({"text": "Goodbye <b>all</b> & thanks", "parse_mode": "HTML", "final": True})
    assert _wait_finished(stack, final) == "done"
    assert set(_rows(stack, final)) == {*active, final_ok}
    assert {c["chat_id"] for c in stack.calls(SEND, ok=True)} == {*active, final_ok}
    assert final_no not in {c["chat_id"] for c in stack.calls()}

    # Telegram rejects the content (here: injected for the first group): the whole broadcast stops and
    # no group is blamed.
    before = _groups(stack)
    ctl.add_fault(
        "error",
        method=SEND,
        error_code=400,
        times=1,
        description="Bad Request: can't parse entities: Can't find end of Bold entity at byte offset 0",
    )
    stopped = stack.broadcast({"text": "Another *one*", "parse_mode": "MarkdownV2"})
    assert _wait_finished(stack, stopped) == "stopped"
    # A send already in flight when the broadcast stopped still gets its outcome recorded.
    stack.wait_for(
        lambda: (
            not stack.scalar(
                "SELECT count(*) FROM sent_messages WHERE broadcast_id = %s AND status IN ('pending', 'sending')",
                (stopped,),
            )
        ),
        what="in-flight sends",
    )
    error = stack.scalar("SELECT error FROM broadcasts WHERE broadcast_id = %s", (stopped,))
    assert "can't parse entities" in error
    statuses = sorted(row["status"] for row in _rows(stack, stopped).values())
    assert statuses.count("failed") == 1 and set(statuses) <= {"failed", "skipped", "sent"}
    assert statuses.count("skipped") >= 1
    assert _groups(stack) == before
