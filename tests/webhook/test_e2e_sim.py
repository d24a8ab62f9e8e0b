"""End to end: the simulator (Telegram's webhook side) → our app under uvicorn → jobs rows; and a
database outage in the middle: 503s, then Telegram's redelivery stores each update exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from telegram_sim.config import SimConfig
from telegram_sim.server import SimServer
from tests.pg_control import DedicatedPostgres
from tests.support import wait_until
from tgms_tui.commands.set_webhook import ALLOWED_UPDATES
from webhook_server.app import create_app

from .conftest import SECRET, make_settings, served


async def query(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url, connect_timeout=2) as conn:
        cur = await conn.execute(sql, params)
        return await cur.fetchall()


def hook_up(sim: SimServer, base_url: str) -> dict[int, str]:
    """Point the simulator's two bots at our two paths; bot id -> our bot name."""
    main, tgms = sim.bots[0], sim.bots[1]
    sim.state.set_webhook(
        main.id, f"{base_url}/api/webhook", secret_token=SECRET, allowed_updates=list(ALLOWED_UPDATES)
    )
    sim.state.set_webhook(
        tgms.id, f"{base_url}/api/webhook/tgms", secret_token=SECRET, allowed_updates=list(ALLOWED_UPDATES)
    )
    return {main.id: "main", tgms.id: "tgms"}


def delivered(sim: SimServer, names: dict[int, str]) -> set[tuple[str, int]]:
    return {(names[a["bot_id"]], int(a["update_id"])) for a in sim.dispatcher.recent_attempts(limit=10_000) if a["ok"]}


def pending(sim: SimServer) -> int:
    return sum(len(sim.state.pending_updates(bot)) for bot in sim.bots)


async def stored(url: str) -> list[tuple[str, int, str, str | None]]:
    """Every stored update: (bot, update_id, type, its job's type, None for one recorded on intake)."""
    return [
        (str(b), int(u), str(t), j)
        for b, u, t, j in await query(
            url,
            "SELECT w.bot, w.update_id, w.update_type, j.job_type"
            " FROM webhook_updates w LEFT JOIN jobs j USING (job_id)",
        )
    ]


async def test_simulator_updates_become_jobs_for_the_right_bot(db_url: str) -> None:
    app = create_app(make_settings(db_url), db_url)
    async with SimServer(config=SimConfig(enforce_flood_limits=False), bots=2) as sim, served(app) as base:
        names = hook_up(sim, base)
        member = sim.state.create_user("Mia")
        chat = sim.state.create_chat("group", "Basic", members=[member.id])
        sim.state.create_join_request(chat.id, None)
        sim.state.post_message(chat.id, member.id, "/rules")
        sim.state.upgrade_chat(chat.id)  # migrate_to_chat_id service message, my_chat_member in the new chat

        async def settled() -> bool:
            return pending(sim) == 0 and len(await stored(db_url)) == len(delivered(sim, names))

        await wait_until(settled, "every simulator update stored")
        jobs = await stored(db_url)
        assert {(b, u) for b, u, _, _ in jobs} == delivered(sim, names)
        assert len(jobs) == len({(b, u) for b, u, _, _ in jobs})
        kinds = {(b, t, j) for b, _, t, j in jobs}
        for bot in ("main", "tgms"):
            assert (bot, "chat_join_request", "tgms_process_join_request") in kinds
            assert (bot, "my_chat_member", "process_telegram_update") in kinds
        migrations = await query(
            db_url, "SELECT count(*) FROM jobs WHERE payload #> '{update,message}' ? 'migrate_to_chat_id'"
        )
        assert migrations[0][0] >= 1


@pytest.fixture
async def own_postgres() -> AsyncIterator[DedicatedPostgres]:
    """A PostgreSQL server of this test's own, so stopping it disturbs no other test."""
    pg = DedicatedPostgres()
    await asyncio.to_thread(pg.__enter__)
    try:
        yield pg
    finally:
        await asyncio.to_thread(pg.__exit__, None, None, None)


@pytest.mark.slow
async def test_database_outage_then_redelivery_stores_each_update_once(own_postgres: DedicatedPostgres) -> None:
    pg = own_postgres
    url = pg.url
    app = create_app(make_settings(url), url)
    # Honour our Retry-After, but briefly, so the test does not wait 5 s per retry.
    config = SimConfig(enforce_flood_limits=False, webhook_retry_after_max=0.3, webhook_retry_max=0.5)
    async with SimServer(config=config, bots=2) as sim, served(app) as base:
        names = hook_up(sim, base)
        member = sim.state.create_user("Mia")
        chat = sim.state.create_chat("supergroup", "Growth", members=[member.id])
        for _ in range(3):
            sim.state.create_join_request(chat.id, None)
        sim.state.post_message(chat.id, member.id, "/hello")

        async def all_stored() -> bool:
            return pending(sim) == 0 and len(await stored(url)) == len(delivered(sim, names))

        await wait_until(all_stored, "updates before the outage")
        before = len(await stored(url))
        assert before >= 6  # 3 join requests x 2 admin bots, plus the message

        await asyncio.to_thread(pg.stop)
        for _ in range(4):
            sim.state.create_join_request(chat.id, None)
        sim.state.post_message(chat.id, member.id, "/during_outage")

        def refused() -> list[dict[str, Any]]:
            return [a for a in sim.dispatcher.recent_attempts(limit=10_000) if a["status"] == 503]

        async def both_bots_refused() -> bool:
            return {a["bot_id"] for a in refused()} == set(names)

        await wait_until(both_bots_refused, "503 answers during the outage")
        assert pending(sim) > 0

        await asyncio.to_thread(pg.start)
        await wait_until(all_stored, "redelivery after the outage", timeout=60)

        jobs = await stored(url)
        keys = [(b, u) for b, u, _, _ in jobs]
        assert len(keys) == len(set(keys)), "an update made two jobs"
        assert set(keys) == delivered(sim, names)
        assert len(keys) >= before + 9  # 4 join requests x 2 bots + the message
        assert any(a["ok"] is False for a in refused())
        [(linked,)] = await query(url, "SELECT count(*) FROM webhook_updates w JOIN jobs j USING (job_id)")
        [(jobs_made,)] = await query(url, "SELECT count(*) FROM jobs")
        assert linked == jobs_made  # every job is an update's, and no update lost the job it was given
        assert all(j is not None or t in ("message", "chat_member") for _, _, t, j in jobs)
