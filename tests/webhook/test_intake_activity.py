"""Updates whose whole effect is member activity are recorded by the intake's statement with no job
(tgms_tui/backend/webhook_updates.py); everything the main worker does more for stays a job. Both
intakes run `store_batch`'s statement, so this covers the webhook and `tgms poll` alike."""

from __future__ import annotations

import copy
import json
from typing import Any

from psycopg_pool import AsyncConnectionPool

from tgms_tui.backend.webhook_updates import batch_text, payload_text, store_batch

from . import samples

GROUP = samples.GROUP["id"]
ANN = samples.ANN["id"]


async def store(pool: AsyncConnectionPool, *updates: dict[str, Any]) -> set[int]:
    kinds = [next(k for k in u if k != "update_id") for u in updates]
    text = batch_text(
        payload_text("tgms", u["update_id"], k, json.dumps(u)) for u, k in zip(updates, kinds, strict=True)
    )
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        return await store_batch(conn, text)


async def rows(pool: AsyncConnectionPool, query: str) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        return await (await conn.execute(query)).fetchall()


async def jobs_by_update(pool: AsyncConnectionPool) -> dict[int, str | None]:
    got = await rows(pool, "SELECT w.update_id, j.job_type FROM webhook_updates w LEFT JOIN jobs j USING (job_id)")
    return {int(u): j for u, j in got}


def leave(update_id: int) -> dict[str, Any]:
    update = samples.chat_member(update_id)
    change = update["chat_member"]
    change["old_chat_member"], change["new_chat_member"] = change["new_chat_member"], change["old_chat_member"]
    return update


def invite_link_join(update_id: int) -> dict[str, Any]:
    update = samples.chat_member(update_id)
    update["chat_member"]["invite_link"] = {"invite_link": "https://t.me/+AbCdEfGh", "creates_join_request": True}
    return update


def join_message(update_id: int, user: dict[str, Any]) -> dict[str, Any]:
    update = samples.message(update_id)
    message = update["message"]
    message.pop("text"), message.pop("entities")
    message["from"], message["new_chat_members"] = user, [user]
    return update


async def test_activity_only_updates_make_no_job_and_record_what_the_worker_would(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        await conn.execute("INSERT INTO managed_groups (group_id, title) VALUES (%s, 'Growth group')", (GROUP,))
    bob = {"id": 77, "is_bot": False, "first_name": "Bob", "username": "bob"}
    # An approval's two follow-ups in one batch (same member, same group: merged into one write), a
    # plain message, and an admin's message, which must not lower their status.
    admin = copy.deepcopy(samples.chat_member(3))
    admin["chat_member"]["new_chat_member"] = {
        "user": {**samples.OWNER, "username": "owner"},
        "status": "administrator",
    }
    assert await store(pool, samples.chat_member(1), join_message(2, samples.ANN), admin) == set()
    said = samples.message(4)
    said["message"]["from"] = bob
    owner_said = samples.message(5)
    owner_said["message"]["from"] = samples.OWNER
    owner_said["message"]["date"] += 3600
    assert await store(pool, said, owner_said) == set()
    assert await jobs_by_update(pool) == dict.fromkeys(range(1, 6))
    assert await rows(pool, "SELECT count(*) FROM jobs") == [(0,)]
    got = await rows(
        pool,
        "SELECT user_id, username, status, is_bot, extract(epoch FROM last_seen_at)::bigint FROM member_activity "
        f"WHERE chat_id = {GROUP} ORDER BY user_id",
    )
    owner_seen = owner_said["message"]["date"]
    assert got == [
        (samples.OWNER["id"], "owner", "administrator", False, owner_seen),
        (ANN, "ann", "member", False, samples.chat_member(1)["chat_member"]["date"]),
        (77, "bob", "member", False, said["message"]["date"]),
    ]
    # Redelivered: already stored, nothing recorded twice, still no job.
    assert await store(pool, samples.chat_member(1), said) == {1, 2}
    assert await rows(pool, "SELECT count(*) FROM jobs") == [(0,)]


async def test_what_needs_the_main_worker_stays_a_job(pool: AsyncConnectionPool) -> None:
    bad_user = samples.chat_member(16)
    bad_user["chat_member"]["new_chat_member"]["user"] = {"id": "42"}
    updates = [
        leave(10),  # invite-link retention counts the leave
        invite_link_join(11),  # ... and the join through the link
        samples.migrate_to_chat(12),  # the group id is rewritten everywhere
        samples.private_start(13),  # /start is answered
        samples.my_chat_member(14),  # the group is registered
        samples.callback_query(15),
        bad_user,  # not well formed: the worker logs it
    ]
    titled = samples.message(17)
    titled["message"]["new_chat_title"] = "Renamed"
    updates.append(titled)
    assert await store(pool, *updates) == set()
    assert await jobs_by_update(pool) == dict.fromkeys(range(10, 18), "process_telegram_update")


async def test_unmanaged_groups_record_nothing_and_make_no_job(pool: AsyncConnectionPool) -> None:
    assert await store(pool, samples.chat_member(1), samples.message(2)) == set()
    assert await jobs_by_update(pool) == {1: None, 2: None}
    assert await rows(pool, "SELECT count(*) FROM member_activity") == [(0,)]
