"""Flood control: Telegram's default limits answered with 429 + retry_after, and switchable."""

from __future__ import annotations

import pytest

from telegram_sim.config import SimConfig
from telegram_sim.flood import FloodControl, StarBalanceTooLow
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


def test_paid_broadcast_lifts_the_bot_rate_and_bills_what_goes_beyond_it() -> None:
    """allow_paid_broadcast: the first 30 in a second are free, the rest (up to 1000/s) cost 0.1 Star
    each; a billed message the balance cannot pay is refused and costs nothing."""
    flood = FloodControl(SimConfig())
    flood.set_stars(7, 10.0)  # 100 billed messages
    groups = iter(range(-1000, -100_000, -1))
    free = [flood.acquire(7, next(groups), True, 10.0) for _ in range(30)]
    assert free == [None] * 30 and flood.stars(7) == {"balance": 10.0, "billed_messages": 0}
    assert flood.acquire(7, next(groups), True, 10.0) == 1  # unpaid: the free rate is used up
    paid = [flood.acquire(7, next(groups), True, 10.0, paid=True) for _ in range(100)]
    assert paid == [None] * 100 and flood.stars(7) == {"balance": 0.0, "billed_messages": 100}
    with pytest.raises(StarBalanceTooLow):
        flood.acquire(7, next(groups), True, 10.0, paid=True)
    assert flood.stars(7)["billed_messages"] == 100
    assert flood.acquire(7, next(groups), True, 11.0, paid=True) is None  # free again a second later


def test_paid_broadcast_has_its_own_1000_per_second_limit_and_keeps_the_group_limit() -> None:
    flood = FloodControl(SimConfig(per_chat_burst=100, per_chat_per_sec=100))
    flood.set_stars(7, 1000.0)
    results = [flood.acquire(7, -5000 - i, True, 3.0, paid=True) for i in range(1031)]
    assert results[:1030] == [None] * 1030 and results[1030] == 1  # 30 free + 1000 paid, then 429
    assert flood.stars(7)["billed_messages"] == 1000
    for _ in range(20):
        assert flood.acquire(8, -1, True, 5.0) is None
    flood.set_stars(8, 100.0)
    assert flood.acquire(8, -1, True, 5.0, paid=True) == 3  # the group's 20/min still holds


def test_paid_broadcast_over_http_and_the_stars_control_api(api: BotApiClient, sim: SimServer) -> None:
    sim.control.set_config(enforce_flood_limits=True, per_bot_per_sec=0.01)  # one free message, then none
    bot = sim.bots[0].id
    first, second, third = (sim.state.create_chat("supergroup", f"P{i}").id for i in range(3))
    api.ok("sendMessage", chat_id=first, text="x")
    assert api.error("sendMessage", chat_id=second, text="x", allow_paid_broadcast=True) == (
        400, "Bad Request: BALANCE_TOO_LOW", None)  # fmt: skip
    assert sim.control.set_stars(bot, 0.1) == {"balance": 0.1, "billed_messages": 0}
    api.ok("sendMessage", chat_id=second, text="x", allow_paid_broadcast=True)
    assert sim.control.stars(bot) == {"balance": 0.0, "billed_messages": 1}
    assert api.error("sendPhoto", chat_id=third, photo="https://e.com/p.jpg", allow_paid_broadcast="true")[1] == (
        "Bad Request: BALANCE_TOO_LOW")  # fmt: skip
    assert len(sim.control.messages(third, sender="bots")) == 0
    response = sim.control._client.post(f"/_sim/bots/{bot}/stars", json={"balance": -1})
    assert response.status_code == 400 and "balance" in response.json()["error"]
