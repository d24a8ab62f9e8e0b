"""The programmatic entry points: create_app under ASGITransport, async SimServer, AsyncSimControl,
and a few rarer errors of the Bot API surface."""

from __future__ import annotations

import threading
import time

import httpx

from telegram_sim.app import create_app
from telegram_sim.config import SimConfig
from telegram_sim.control import AsyncSimControl
from telegram_sim.server import SimServer
from telegram_sim.state import SimState
from tests.sim.conftest import BotApiClient


async def test_create_app_works_without_a_lifespan() -> None:
    state = SimState(SimConfig(enforce_flood_limits=False), seed=1)
    bot = state.add_bot()
    chat = state.create_chat("group", "Unit")
    app = create_app(state)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
        sent = (await client.post(f"/bot{bot.token}/sendMessage", json={"chat_id": chat.id, "text": "x"})).json()
        assert sent["ok"] is True and sent["result"]["chat"]["id"] == chat.id
        # the lazily started dispatcher serves long polling
        state.create_join_request(chat.id, None)
        updates = (await client.get(f"/bot{bot.token}/getUpdates", params={"timeout": 1})).json()["result"]
        assert [next(k for k in u if k != "update_id") for u in updates] == ["chat_join_request"]
        await app.state.dispatcher.stop()


async def test_async_server_and_control() -> None:
    sim = SimServer(config=SimConfig(enforce_flood_limits=False), bots=1)
    async with sim, AsyncSimControl(sim.base_url) as ctl, httpx.AsyncClient(trust_env=False) as http:
        chat = await ctl.create_chat("supergroup", "Async", members=2)
        request = await ctl.join_request(chat["id"])
        body = {"chat_id": chat["id"], "user_id": request["user_id"]}
        answer = await http.post(sim.api_url("approveChatJoinRequest"), json=body)
        assert answer.json() == {"ok": True, "result": True}
        assert (await ctl.chat(chat["id"]))["member_count"] == chat["member_count"] + 1
        assert [c["method"] for c in await ctl.calls()] == ["approveChatJoinRequest"]


def test_a_newer_get_updates_terminates_the_older(api: BotApiClient, sim: SimServer) -> None:
    answers: list[tuple[int, str]] = []

    def poll() -> None:
        answer = api("getUpdates", timeout=5)
        answers.append((answer.status, answer.body.get("description", "")))

    generation = sim.bot.poll_generation
    older = threading.Thread(target=poll)
    older.start()
    deadline = time.monotonic() + 5
    while sim.bot.poll_generation == generation:  # the older poll is waiting
        assert time.monotonic() < deadline
        time.sleep(0.01)
    newer = BotApiClient(sim.base_url, sim.token)
    assert newer.ok("getUpdates", timeout=0) == []
    older.join(5)
    newer.http.close()
    assert answers == [(409, "Conflict: terminated by other getUpdates request; make sure that only one bot "
                             "instance is running")]  # fmt: skip


def test_raw_text_over_32768_bytes(api: BotApiClient, sim: SimServer) -> None:
    chat = sim.state.create_chat("group", "G").id
    assert api.error("sendMessage", chat_id=chat, text="я" * 16385) == (400, "Bad Request: text is too long", None)


def test_bots_cannot_message_bots(api: BotApiClient, sim: SimServer) -> None:
    other = sim.bots[1]
    other.user.started_bots.add(sim.bot.id)
    assert api.error("sendMessage", chat_id=other.id, text="hi") == (
        403, "Forbidden: bot can't send messages to bots", None)  # fmt: skip
