"""Flood control: Telegram's default limits answered with 429 + retry_after, and switchable."""

from __future__ import annotations

from telegram_sim.config import SimConfig
from telegram_sim.flood import FloodControl
from telegram_sim.server import SimServer
from tests.sim.conftest import BotApiClient


def test_per_chat_burst_then_429(api: BotApiClient, sim: SimServer) -> None:
    # a slow refill (one message per 10 s) keeps the test independent of machine speed
    sim.control.set_config(enforce_flood_limits=True, per_chat_burst=3, per_chat_per_sec=0.1)
    chat = sim.state.create_chat("supergroup", "S").id
    for _ in range(3):
        api.ok("sendMessage", chat_id=chat, text="x")
    answer = api("sendMessage", chat_id=chat, text="x")
    assert answer.status == 429
    assert answer.body == {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 10",
                           "parameters": {"retry_after": 10}}  # fmt: skip
    assert answer.headers["retry-after"] == "10"
    assert api("sendPhoto", chat_id=chat, photo="https://e.com/p.jpg").status == 429
    # refused calls sent nothing; other chats are not affected
    assert len(sim.control.messages(chat, sender="bots")) == 3
    assert api("sendMessage", chat_id=sim.state.create_chat("supergroup", "T").id, text="x").status == 200


def test_group_limit_20_per_minute(api: BotApiClient, sim: SimServer) -> None:
    sim.control.set_config(enforce_flood_limits=True, per_chat_burst=100, per_chat_per_sec=100)
    chat = sim.state.create_chat("group", "G").id
    for _ in range(20):
        api.ok("sendMessage", chat_id=chat, text="x")
    code, description, parameters = api.error("sendMessage", chat_id=chat, text="x")
    assert code == 429 and parameters is not None
    assert parameters["retry_after"] == 3  # one slot per 60/20 s
    assert description == "Too Many Requests: retry after 3"


def test_bot_limit_across_chats(api: BotApiClient, api2: BotApiClient, sim: SimServer) -> None:
    sim.control.set_config(enforce_flood_limits=True, per_bot_per_sec=0.5)
    first, second = (sim.state.create_chat("supergroup", f"S{i}").id for i in range(2))
    api.ok("sendMessage", chat_id=first, text="x")
    assert api.error("sendMessage", chat_id=second, text="x")[2] == {"retry_after": 2}
    assert api2("sendMessage", chat_id=second, text="x").status == 200  # another bot has its own budget


def test_default_limits_are_telegrams() -> None:
    config = SimConfig()
    assert (config.per_bot_per_sec, config.per_group_per_min, config.per_chat_per_sec) == (30, 20, 1)
    flood = FloodControl(config)
    results = [flood.acquire(1, -1000 - i, True, 50.0) for i in range(31)]  # 31 groups, same instant
    assert results[:30] == [None] * 30 and results[30] == 1


def test_limits_can_be_switched_off(api: BotApiClient, sim: SimServer) -> None:
    sim.control.set_config(enforce_flood_limits=True, per_chat_burst=1)
    chat = sim.state.create_chat("supergroup", "S").id
    api.ok("sendMessage", chat_id=chat, text="x")
    assert api("sendMessage", chat_id=chat, text="x").status == 429
    assert sim.control.set_config(enforce_flood_limits=False)["enforce_flood_limits"] is False
    for _ in range(10):
        api.ok("sendMessage", chat_id=chat, text="x")


def test_flood_control_refills_over_time() -> None:
    config = SimConfig(per_chat_per_sec=1, per_chat_burst=2, per_group_per_min=20, per_bot_per_sec=30)
    flood = FloodControl(config)
    assert flood.acquire(1, -5, True, 100.0) is None
    assert flood.acquire(1, -5, True, 100.0) is None
    assert flood.acquire(1, -5, True, 100.0) == 1
    assert flood.acquire(1, -5, True, 100.5) == 1
    assert flood.acquire(1, -5, True, 101.0) is None  # one second later one slot is back
    assert flood.acquire(2, -5, True, 101.0) is None  # per bot
    assert flood.acquire(1, 42, False, 101.0) is None  # per chat


def test_unknown_config_key_is_rejected(sim: SimServer) -> None:
    response = sim.control._client.post("/_sim/config", json={"per_planet_per_sec": 1})
    assert response.status_code == 400 and "per_planet_per_sec" in response.json()["error"]
