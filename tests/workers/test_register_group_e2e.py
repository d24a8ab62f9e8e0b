"""`tgms_register_group` on a real TGMS worker: the control center's add-group request is checked with
Telegram (the simulator) and registers the chat with its real title, or fails with the reason."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from tgms_tui.backend import groups

from .harness import Stack


def _request(stack: Stack, group_id: int) -> int:
    async def go() -> int:
        async with await psycopg.AsyncConnection.connect(stack.db_url) as conn:
            job_id = await groups.request_registration(conn, group_id)
            await conn.commit()
            return job_id

    return asyncio.run(go())


def _job(stack: Stack, job_id: int) -> tuple[Any, ...]:
    return stack.sql("SELECT status, last_error FROM jobs WHERE job_id = %s", (job_id,))[0]


def test_a_requested_group_is_checked_then_registered_or_refused(stack: Stack) -> None:
    ctl = stack.ctl
    stack.start_worker("tgms")
    good = ctl.create_chat("supergroup", "Checked group", bots=[], members=2)
    ctl.promote_bot(good["id"], stack.tgms_bot_id)
    member = ctl.create_chat("supergroup", "Bot is a member", bots=[], members=2)
    ctl.add_member(member["id"], stack.tgms_bot_id)

    ok, refused, unknown = (_request(stack, g) for g in (good["id"], member["id"], -1009999999999))
    stack.wait_for(lambda: _job(stack, ok)[0] == "done", what="the good group's job done")
    rows = stack.sql("SELECT title, chat_type, is_active, bot_can_invite FROM managed_groups WHERE group_id = %s",
                     (good["id"],))  # fmt: skip
    assert rows == [("Checked group", "supergroup", True, True)]

    stack.wait_for(lambda: _job(stack, refused)[0] == "failed", what="the member group's job failed")
    assert "not an administrator" in _job(stack, refused)[1]
    stack.wait_for(lambda: _job(stack, unknown)[0] == "failed", what="the unknown group's job failed")
    assert "no such chat" in _job(stack, unknown)[1]
    registered = stack.sql(
        "SELECT group_id FROM managed_groups WHERE group_id IN (%s, %s)", (member["id"], -1009999999999)
    )
    assert registered == []


def test_reactivation_checks_the_bots_rights_first(stack: Stack) -> None:
    ctl = stack.ctl
    stack.start_worker("tgms")
    good = ctl.create_chat("supergroup", "Rights kept", bots=[], members=2)
    ctl.promote_bot(good["id"], stack.tgms_bot_id)
    demoted = ctl.create_chat("supergroup", "Rights lost", bots=[], members=2)
    ctl.add_member(demoted["id"], stack.tgms_bot_id)
    for chat in (good, demoted):
        stack.add_group(chat, is_active=False, deactivated_reason="deactivated by an operator", consecutive_failures=3)

    def reactivate(group_id: int) -> int:
        async def go() -> int:
            async with await psycopg.AsyncConnection.connect(stack.db_url) as conn:
                job_id = await groups.request_registration(conn, group_id, reactivate=True)
                await conn.commit()
                return job_id

        return asyncio.run(go())

    ok, refused = reactivate(good["id"]), reactivate(demoted["id"])
    stack.wait_for(lambda: _job(stack, ok)[0] == "done", what="the good group reactivated")
    stack.wait_for(lambda: _job(stack, refused)[0] == "failed", what="the demoted group refused")
    assert "not reactivated: the bot is not an administrator" in _job(stack, refused)[1]
    rows = {g: (a, f) for g, a, f in stack.sql("SELECT group_id, is_active, consecutive_failures FROM managed_groups")}
    assert rows[good["id"]] == (True, 0) and rows[demoted["id"]] == (False, 3)
