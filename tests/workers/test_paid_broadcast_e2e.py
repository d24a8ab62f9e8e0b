"""Paid broadcasts end to end: admin API (`"paid": true`) → two TGMS workers → the simulator, which
enforces Telegram's free bot rate, lets allow_paid_broadcast messages past it and bills them in Stars.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from telegram_sim.config import SimConfig
from tests.token_guard import register_secret
from workers.group_sender import MAX_IN_FLIGHT

from .harness import ADMIN_KEY, WEBHOOK_SECRET, Stack

GROUPS = 60
FREE_RATE = 5.0  # the simulator's free bot rate, and TGMS's own for free broadcasts


@pytest.fixture
def stack(db_url: str, tmp_path: Path) -> Iterator[Stack]:
    config = SimConfig(enforce_flood_limits=True, per_bot_per_sec=FREE_RATE)
    env = {"TGMS_RATE_PER_SECOND": str(FREE_RATE), "TGMS_PAID_RATE_PER_SECOND": "200"}
    with Stack(db_url, tmp_path, sim_config=config, env=env) as s:
        for secret in (s.main_token, s.tgms_token, WEBHOOK_SECRET, ADMIN_KEY):
            register_secret(secret)
        yield s


def _send(stack: Stack, body: dict[str, Any]) -> dict[str, Any]:
    assert stack.webhook_url is not None
    response = httpx.post(f"{stack.webhook_url}/api/tgms/send", json=body, headers={"x-api-key": ADMIN_KEY}, timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _groups(stack: Stack, n: int) -> list[int]:
    return [stack.add_group(stack.ctl.create_chat("supergroup", bots=[stack.tgms_bot_id])) for _ in range(n)]


def _finished(stack: Stack, broadcast_id: int) -> tuple[str, str | None]:
    def done() -> tuple[str, str | None] | None:
        row = stack.sql("SELECT status, error FROM broadcasts WHERE broadcast_id = %s", (broadcast_id,))[0]
        return None if row[0] in ("pending", "running") else (str(row[0]), row[1])

    finished = stack.wait_for(done, timeout=60, what=f"broadcast {broadcast_id} finished")
    assert finished is not None  # wait_for returns only a true value
    return finished


def test_paid_broadcast_goes_past_the_free_rate_and_is_billed(stack: Stack) -> None:
    stack.start_worker("tgms")
    stack.start_worker("tgms")
    groups = _groups(stack, GROUPS)
    stack.ctl.set_stars(stack.tgms_bot_id, 100)
    answer = _send(stack, {"text": "paid hello", "allow_paid_broadcast": True})
    assert answer["paid"] is True and answer["estimated_stars"] == GROUPS * 0.1

    assert _finished(stack, answer["broadcast_id"]) == ("done", None)
    calls = stack.calls("sendMessage")
    assert all(str(c["params"].get("allow_paid_broadcast")).lower() == "true" for c in calls)
    assert stack.ok_sends() == {g: 1 for g in groups}
    # The simulator let most of them past its free rate and billed exactly those, 0.1 Star each.
    stars = stack.ctl.stars(stack.tgms_bot_id)
    assert stars["billed_messages"] > GROUPS / 2
    assert stars["balance"] == pytest.approx(100 - 0.1 * stars["billed_messages"])
    assert not [c for c in calls if not c["ok"]]  # no 429: TGMS paced at the paid rate, under 1000/s


def test_a_star_balance_too_low_stops_the_broadcast_and_blames_no_group(stack: Stack) -> None:
    stack.start_worker("tgms")
    groups = _groups(stack, GROUPS)
    stack.ctl.set_stars(stack.tgms_bot_id, 0.5)  # five billed messages
    answer = _send(stack, {"text": "paid, underfunded", "paid": True})

    status, error = _finished(stack, answer["broadcast_id"])
    assert status == "stopped" and error is not None and "Stars balance is too low" in error
    # The copies in flight when it stopped are recorded as they answer, after the stop.
    in_flight = "SELECT count(*) = 0 FROM sent_messages WHERE broadcast_id = %s AND status = 'sending'"
    stack.wait_for(
        lambda: stack.scalar(in_flight, (answer["broadcast_id"],)), timeout=30, what="in-flight copies recorded"
    )
    found = stack.sql("SELECT chat_id, status, error FROM sent_messages WHERE broadcast_id = %s",
                      (answer["broadcast_id"],))  # fmt: skip
    rows = {int(chat): str(status) for chat, status, _ in found}
    # Refused copies: those already in flight when the first refusal came (one sender: at most
    # MAX_IN_FLIGHT of them), each for the balance; no call starts after it (calls already launched
    # may reach the simulator a little later on a loaded machine, hence the margin).
    refused = [error for _, status, error in found if status == "failed"]
    assert 1 <= len(refused) <= MAX_IN_FLIGHT and all("BALANCE_TOO_LOW" in e for e in refused), refused
    sends = stack.calls("sendMessage")
    first_refusal = min(float(c["at"]) for c in sends if not c["ok"])
    late = [c for c in sends if float(c["at"]) > first_refusal + 2.0]
    assert not late, f"{len(late)} send(s) started after the balance ran out"
    assert set(rows.values()) <= {"sent", "failed", "skipped"}
    assert stack.ok_sends() == {g: 1 for g, s in rows.items() if s == "sent"}
    assert stack.ctl.stars(stack.tgms_bot_id) == {"balance": 0.0, "billed_messages": 5}
    failures = stack.sql("SELECT count(*) FROM managed_groups WHERE consecutive_failures > 0 OR NOT is_active")
    assert failures == [(0,)] and len(rows) == len(groups)
