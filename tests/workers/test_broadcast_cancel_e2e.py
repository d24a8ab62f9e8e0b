"""Cancelling a running broadcast through the admin API, with real worker processes and the simulator:
the senders stop before their next group, groups already sent keep their copy, the rest are skipped,
and nothing reaches Telegram after the cancel but a send that was already under way."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from telegram_sim.config import SimConfig

from .harness import ADMIN_KEY, WEBHOOK_SECRET, Stack

SEND = "sendMessage"


@pytest.fixture
def stack(db_url: str, tmp_path: Any) -> Any:
    from tests.token_guard import register_secret

    with Stack(db_url, tmp_path, sim_config=SimConfig(enforce_flood_limits=False)) as s:
        for secret in (s.main_token, s.tgms_token, WEBHOOK_SECRET, ADMIN_KEY):
            register_secret(secret)
        yield s


def test_cancel_stops_a_running_broadcast_between_groups(stack: Stack) -> None:
    # Two workers (so several senders share the broadcast), one group every 0.4 s: 12 groups take ~5 s.
    stack.start_worker("tgms", TGMS_GROUP_DELAY_SECONDS="0.4")
    stack.start_worker("tgms", TGMS_GROUP_DELAY_SECONDS="0.4")
    stack.wait_jobs_idle()
    groups = [stack.add_group(stack.ctl.create_chat("supergroup", bots=[stack.tgms_bot_id])) for _ in range(12)]
    broadcast_id = stack.broadcast({"text": "halfway"})
    stack.wait_for(lambda: len(stack.ok_sends()) >= 3, timeout=30, what="three groups sent")

    assert stack.webhook_url is not None
    response = httpx.post(f"{stack.webhook_url}/api/tgms/broadcasts/{broadcast_id}/cancel",
                          headers={"x-api-key": ADMIN_KEY}, timeout=10)  # fmt: skip
    cancelled_at = time.time()
    assert response.status_code == 200, response.text
    assert response.json()["broadcast"]["status"] == "cancelled"

    def settled() -> bool:
        left = stack.scalar("SELECT count(*) FROM sent_messages WHERE broadcast_id = %s "
                            "AND status IN ('pending', 'sending')", (broadcast_id,))  # fmt: skip
        return left == 0

    stack.wait_for(settled, timeout=30, what="in-flight sends recorded")
    stack.wait_jobs_idle("tgms_send_to_groups")
    time.sleep(1.0)  # a sender that ignored the cancel would send again within this pacing

    rows = dict(stack.sql("SELECT chat_id, status FROM sent_messages WHERE broadcast_id = %s", (broadcast_id,)))
    sends = stack.calls(SEND)
    ok = stack.ok_sends()
    sent = {chat for chat, status in rows.items() if status == "sent"}
    assert set(ok) == sent and all(n == 1 for n in ok.values())  # each sent group exactly once
    assert set(rows.values()) <= {"sent", "skipped"}
    assert 3 <= len(sent) < len(groups) and len(rows) == len(groups)
    # Only a send already under way when the cancel committed may arrive after it (one per sender).
    late = [c for c in sends if c["at"] > cancelled_at]
    assert len(late) <= 4, late
    assert {c["chat_id"] for c in late} <= sent
    status, cancelled_by, finished = stack.sql(
        "SELECT status, cancelled_by, finished_at IS NOT NULL FROM broadcasts WHERE broadcast_id = %s",
        (broadcast_id,),
    )[0]
    assert (status, cancelled_by, finished) == ("cancelled", "api:127.0.0.1", True)
    # The sender jobs ended cleanly: the broadcast says cancelled, no job failed.
    assert stack.scalar("SELECT count(*) FROM jobs WHERE job_type = 'tgms_send_to_groups' AND status <> 'done'") == 0
