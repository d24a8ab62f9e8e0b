"""Scenarios 16a-16c: follow-ups on a sent broadcast (edit, retract, expiry) through the real pipeline —
the admin API in a webhook process, `tgms worker` processes and the simulator — when things go wrong:
a worker SIGKILLed in the middle of a retract, a group that moved to a supergroup after the send, a
copy an administrator deleted, copies on both sides of Telegram's 48 hours, and 429 storms while
editing and while an expiry (`delete_after`) retracts.

The simulator is the oracle: its record of every Bot API call (per chat: how many deleteMessages /
editMessageText calls, which succeeded) and of every message (current text, history, deleted)."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.workers.harness import ADMIN_KEY, Stack
from tgms_tui.backend import followups

from .oracle import per_chat
from .results import ScenarioFactory
from .world import StackFactory, add_groups, managed_chats, tgms_chats

KEYS = {"x-api-key": ADMIN_KEY}
H48 = 48 * 3600


def _api(stack: Stack, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    assert stack.webhook_url is not None
    url = f"{stack.webhook_url}{path}"
    answer = (
        httpx.post(url, json=body, headers=KEYS, timeout=10)
        if body is not None
        else httpx.get(url, headers=KEYS, timeout=10)
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _sent(stack: Stack, body: dict[str, Any], timeout: float = 120) -> int:
    broadcast_id = stack.broadcast(body)
    stack.wait_for(
        lambda: (
            stack.scalar("SELECT status FROM broadcasts WHERE broadcast_id = %s", (broadcast_id,)) == "done" or None
        ),
        timeout=timeout,
        what="broadcast sent",
    )
    return broadcast_id


def _followup(stack: Stack, broadcast_id: int, action: str, body: dict[str, Any] | None = None) -> int:
    return int(_api(stack, f"/api/tgms/broadcasts/{broadcast_id}/{action}", body or {})["followup_id"])


JOB_STATUS = "SELECT j.status FROM jobs j JOIN broadcast_followups f ON f.job_id = j.job_id WHERE f.followup_id = %s"


def _finished(stack: Stack, followup_id: int, timeout: float = 120) -> dict[int, tuple[str, str | None]]:
    stack.wait_for(
        lambda: stack.scalar(JOB_STATUS, (followup_id,)) == "done" or None,
        timeout=timeout,
        what=f"follow-up {followup_id} done",
    )
    rows = stack.sql(
        "SELECT s.chat_id, g.status, g.error FROM broadcast_followup_groups g "
        "JOIN sent_messages s ON s.message_id = g.sent_message_id WHERE g.followup_id = %s",
        (followup_id,),
    )
    return {int(c): (str(s), e) for c, s, e in rows}


def _copy(stack: Stack, chat: int, code: str) -> dict[str, Any]:
    """The simulator's record of the copy with this debug code in `chat` (deleted ones included)."""

    def has(r: dict[str, Any]) -> bool:
        return any((t or "").endswith(code) for t in [r["text"], *(h.get("text") for h in r["history"])])

    rows = [r for r in stack.ctl.messages(chat, sender="bots", include_deleted=True) if has(r)]
    assert len(rows) == 1, (chat, code, rows)
    return rows[0]


@pytest.mark.slow
def test_sigkill_mid_retract_deletes_no_copy_twice(
    db_url: str, make_stack: StackFactory, scenario: ScenarioFactory
) -> None:
    groups, kills_wanted, lease, latency, seed, rate = 100, 4, 3.0, 0.25, 16, 8
    rec = scenario(
        "16a", f"Worker SIGKILL during the retract of a {groups}-group broadcast",
        injected=f"{kills_wanted} SIGKILLs of the `tgms worker` running the retract (of 2; random.Random({seed}): "
        f"0.3-1.2 s apart), each restarted at once, while deleteMessages takes {latency * 1000:.0f} ms; rate "
        f"{rate}/s, lease {lease:g} s",
        checked="per group: at most one deleteMessages call; 'done' = the copy is deleted at Telegram; "
        "'ambiguous' <= 1 call and listed by `tgms broadcast show` and the API; no row left pending or doing",
    )  # fmt: skip
    stack: Stack = make_stack(db_url, env={"TGMS_JOB_LEASE_SECONDS": str(lease), "TGMS_RATE_PER_SECOND": str(rate)})
    workers = [stack.start_worker("tgms"), stack.start_worker("tgms")]
    chats = managed_chats(stack, groups)
    broadcast_id = _sent(stack, {"text": "Flash sale, today only"})
    codes = dict(stack.sql("SELECT chat_id, debug_code FROM sent_messages WHERE broadcast_id = %s", (broadcast_id,)))
    stack.ctl.add_fault("hang", method="deleteMessages", seconds=latency, apply=True, times=None)
    retract = _followup(stack, broadcast_id, "retract")

    rng = random.Random(seed)
    kills: list[int] = []  # calls in flight ('doing' rows) at each kill
    while len(kills) < kills_wanted:
        time.sleep(rng.uniform(0.3, 1.2))
        row = stack.sql(
            "SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'doing') "
            "FROM broadcast_followup_groups WHERE followup_id = %s",
            (retract,),
        )[0]
        if stack.scalar("SELECT count(*) FROM broadcast_followup_groups WHERE followup_id = %s", (retract,)) and (
            row[0] == 0 and row[1] == 0
        ):
            break
        holder = stack.scalar(
            "SELECT h.pid FROM jobs j JOIN broadcast_followups f ON f.job_id = j.job_id JOIN bot_health h "
            "ON h.worker_id = j.locked_by WHERE f.followup_id = %s AND j.status = 'running'",
            (retract,),
        )
        pids = [w.pid for w in workers]
        i = pids.index(holder) if holder in pids else rng.randrange(len(workers))
        workers[i].send_signal(signal.SIGKILL)
        workers[i].wait(10)
        kills.append(int(row[1]))
        workers[i] = stack.start_worker("tgms")
    result = _finished(stack, retract, timeout=180)
    assert len(kills) == kills_wanted, f"the retract ended after only {len(kills)} kills: {kills}"
    assert sorted(result) == sorted(chats)
    statuses = Counter(s for s, _ in result.values())
    assert set(statuses) <= {"done", "ambiguous"}, statuses
    calls = stack.calls("deleteMessages")
    attempts, ok = per_chat(calls), per_chat(calls, ok=True)
    for chat, (status, error) in result.items():
        assert attempts[chat] <= 1, (chat, status, attempts[chat])  # never deleted twice
        deleted = _copy(stack, chat, codes[chat])["deleted"]
        if status == "done":
            assert ok[chat] == 1 and deleted, (chat, ok[chat], deleted)
        else:
            assert error and "outcome unknown" in error
    ambiguous = [c for c, (s, _) in result.items() if s == "ambiguous"]
    shown = subprocess.run([sys.executable, "-m", "tgms_tui.commands.cli", "broadcast", "show", str(broadcast_id)],
                           env=stack.env(), capture_output=True, text=True, timeout=60)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    line = next(x for x in shown.stdout.splitlines() if x.startswith(f"retract #{retract}:"))
    assert f"{statuses['done']} done" in line and (not ambiguous or f"{len(ambiguous)} ambiguous" in line), line
    api = _api(stack, f"/api/tgms/broadcasts/{broadcast_id}")
    listed = [d["chat_id"] for d in api["followups"][0]["deliveries"] if d["status"] == "ambiguous"]
    assert sorted(listed) == sorted(ambiguous)

    rec.measure("kills", len(kills))
    rec.measure("kills with a delete in flight", sum(1 for n in kills if n))
    rec.measure("done", statuses["done"])
    rec.measure("ambiguous", statuses["ambiguous"])
    rec.measure("ambiguous yet deleted", sum(1 for c in ambiguous if ok[c]))
    rec.measure("deleted twice", sum(1 for n in attempts.values() if n > 1))


@pytest.mark.slow
def test_moved_group_admin_deleted_copy_and_the_48_hour_boundary(
    db_url: str, make_stack: StackFactory, scenario: ScenarioFactory
) -> None:
    rec = scenario(
        "16b", "Edit and retract after a group moved, an admin deleted a copy, around 48 hours",
        injected="after the send: one basic group upgraded to a supergroup; one copy deleted by an admin; "
        "copies aged 48 h - 1 min, 48 h + 1 min (both sides), and 48 h + 1 min at Telegram only (clock skew)",
        checked="edit: the moved group's copy skipped after Telegram's migration answer, no call at the new id, "
        "the supergroup's own messages untouched; the admin-deleted copy skipped; retract: the copy inside 48 h "
        "deleted, the one past it skipped with no call, the skewed one skipped on Telegram's answer; every "
        "other copy edited once and deleted once",
    )  # fmt: skip
    stack: Stack = make_stack(db_url)
    stack.start_worker("tgms")
    plain = managed_chats(stack, 6)
    basic = add_groups(stack, tgms_chats(stack, 1, kind="group"))[0]
    broadcast_id = _sent(stack, {"text": "Meet-up on *Friday*", "parse_mode": "Markdown"})
    codes = {int(c): str(d) for c, d in stack.sql(
        "SELECT chat_id, debug_code FROM sent_messages WHERE broadcast_id = %s", (broadcast_id,))}  # fmt: skip
    deleted_by_admin, inside, outside, skewed = plain[:4]
    ctl = stack.ctl

    # The group moves; in its supergroup, members write messages whose ids include the copy's id.
    old_copy = _copy(stack, basic, codes[basic])
    supergroup = int(ctl.upgrade(basic)["id"])
    user = ctl.create_user()["id"]
    ctl.add_member(supergroup, user)
    for i in range(old_copy["message_id"] + 2):
        ctl.post_message(supergroup, user, f"chat {i}")
    ctl.delete_message(deleted_by_admin, _copy(stack, deleted_by_admin, codes[deleted_by_admin])["message_id"])

    edit = _finished(stack, _followup(stack, broadcast_id, "edit", {"text": "Meet-up on *Saturday*"}))
    assert edit[supergroup] == ("skipped", followups.MOVED)  # its row follows the group's new id
    assert edit[deleted_by_admin] == ("skipped", "the message was deleted in the group")
    assert {edit[c][0] for c in plain if c != deleted_by_admin} == {"done"}
    edits = stack.calls("editMessageText")
    assert per_chat(edits)[basic] == 1 and per_chat(edits)[supergroup] == 0
    assert per_chat(edits, ok=True) == Counter({c: 1 for c in plain if c != deleted_by_admin})

    ctl.age_messages(H48 - 60, chat_id=inside)
    ctl.age_messages(H48 + 60, chat_id=outside)
    ctl.age_messages(H48 + 60, chat_id=skewed)
    for chat, age in ((inside, H48 - 60), (outside, H48 + 60), (skewed, H48 - 60)):
        stack.sql("UPDATE sent_messages SET sent_at = now() - make_interval(secs => %s) WHERE chat_id = %s AND "
                  "broadcast_id = %s", (age, chat, broadcast_id))  # fmt: skip
    retract = _finished(stack, _followup(stack, broadcast_id, "retract"))
    deletes = per_chat(stack.calls("deleteMessages"))
    assert retract[inside][0] == "done" and _copy(stack, inside, codes[inside])["deleted"]
    assert retract[outside] == ("skipped", followups.TOO_OLD) and deletes[outside] == 0
    assert retract[skewed] == ("skipped", followups.TOO_OLD) and deletes[skewed] == 1
    assert not _copy(stack, outside, codes[outside])["deleted"] and not _copy(stack, skewed, codes[skewed])["deleted"]
    assert retract[supergroup] == ("skipped", followups.MOVED) and deletes[supergroup] == deletes[basic] == 0
    assert not any(m["deleted"] for m in ctl.messages(supergroup, include_deleted=True))  # members' messages kept
    assert retract[deleted_by_admin][0] == "done"  # Telegram answers True: nothing of it is left
    for chat in plain[4:]:
        assert retract[chat][0] == "done" and deletes[chat] == 1 and _copy(stack, chat, codes[chat])["deleted"]

    rec.measure("edited", sum(1 for s, _ in edit.values() if s == "done"))
    rec.measure("deleted", sum(1 for s, _ in retract.values() if s == "done"))
    rec.measure("skipped (moved, too old, too old at Telegram)", sum(1 for s, _ in retract.values() if s == "skipped"))
    rec.measure("calls at the moved group's new id", per_chat(edits)[supergroup] + deletes[supergroup])


@pytest.mark.slow
def test_429_storms_during_edit_and_an_expiry_retract(
    db_url: str, make_stack: StackFactory, scenario: ScenarioFactory
) -> None:
    groups, storm = 12, 8
    rec = scenario(
        "16c", "429 storms during an edit and during an expiry (delete_after) retract",
        injected=f"{storm} injected 429s (retry_after 1) on editMessageText and {storm} on deleteMessages; "
        f"a {groups}-group broadcast sent with delete_after 1m",
        checked="every copy edited exactly once and deleted exactly once (successful calls per chat), none "
        "failed; the expiry job ran at its time (send + 60 s) without an operator",
    )  # fmt: skip
    stack: Stack = make_stack(db_url)
    stack.start_worker("tgms")
    chats = managed_chats(stack, groups)
    broadcast_id = _sent(stack, {"text": "Today's code: *SUMMER*", "parse_mode": "Markdown", "delete_after": "1m"})
    expiry_at, created = stack.sql(
        "SELECT f.run_at, b.created_at FROM broadcast_followups f JOIN broadcasts b USING (broadcast_id) "
        "WHERE f.broadcast_id = %s AND f.action = 'retract'",
        (broadcast_id,),
    )[0]
    assert abs((expiry_at - created).total_seconds() - 60) < 1
    stack.ctl.add_fault("flood", method="editMessageText", retry_after=1, times=storm)
    edit = _finished(stack, _followup(stack, broadcast_id, "edit", {"text": "Today's code: *WINTER*"}))
    assert {s for s, _ in edit.values()} == {"done"}
    edits = stack.calls("editMessageText")
    assert per_chat(edits, ok=True) == Counter({c: 1 for c in chats})

    stack.ctl.add_fault("flood", method="deleteMessages", retry_after=1, times=storm)
    expiry = int(stack.scalar("SELECT followup_id FROM broadcast_followups WHERE broadcast_id = %s AND "
                              "action = 'retract'", (broadcast_id,)))  # fmt: skip
    retract = _finished(stack, expiry, timeout=150)
    assert {s for s, _ in retract.values()} == {"done"}
    deletes = stack.calls("deleteMessages")
    assert per_chat(deletes, ok=True) == Counter({c: 1 for c in chats})
    first_delete = min(c["at"] for c in deletes)
    sent_first = min(c["at"] for c in stack.calls("sendMessage"))
    assert first_delete - sent_first >= 59  # not before its time
    assert all(m["deleted"] for c in chats for m in stack.ctl.messages(c, sender="bots", include_deleted=True))

    rec.measure("429s on edit", sum(1 for c in edits if not c["ok"]))
    rec.measure("429s on delete", sum(1 for c in deletes if not c["ok"]))
    rec.measure("edited once", sum(1 for n in per_chat(edits, ok=True).values() if n == 1))
    rec.measure("deleted once", sum(1 for n in per_chat(deletes, ok=True).values() if n == 1))
    rec.measure("expiry after send (s)", round(first_delete - sent_first, 1))
