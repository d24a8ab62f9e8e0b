"""The /_sim/ control API: fixed contracts (chats, calls), filters, faults, reset and config."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from telegram_sim.control import SimControlError
from telegram_sim.server import SimServer
from tests.sim.conftest import BotApiClient


def test_chats_contract(sim: SimServer) -> None:
    group = sim.control.create_chat("group", "Basic", members=4)
    sim.control.create_chat("supergroup", "Super", members=1)
    response = httpx.get(f"{sim.control_url}/chats", trust_env=False)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    chats = response.json()
    assert isinstance(chats, list) and len(chats) == 2
    for chat in chats:
        assert {"id", "type", "title", "member_count"} <= set(chat)
        assert isinstance(chat["id"], int) and isinstance(chat["member_count"], int)
    by_title = {c["title"]: c for c in chats}
    assert by_title["Basic"]["type"] == "group" and by_title["Basic"]["id"] == group["id"]
    assert by_title["Basic"]["member_count"] == 1 + 4 + 2  # owner, members, both bots
    assert by_title["Super"]["type"] == "supergroup" and str(by_title["Super"]["id"]).startswith("-100")


def test_calls_contract(api: BotApiClient, sim: SimServer) -> None:
    chat = sim.state.create_chat("supergroup", "S").id
    before = time.time()
    api.ok("getMe")
    api.error("sendMessage", chat_id=chat, text="")
    api.ok("sendMessage", chat_id=chat, text="hello")
    calls = httpx.get(f"{sim.control_url}/calls", trust_env=False).json()
    assert [c["method"] for c in calls] == ["getMe", "sendMessage", "sendMessage"]
    for call in calls:
        assert {"method", "params", "ok", "error_code", "at"} <= set(call)
        assert isinstance(call["at"], float) and before - 1 <= call["at"] <= time.time()
    assert [c["at"] for c in calls] == sorted(c["at"] for c in calls)
    assert (calls[0]["ok"], calls[0]["error_code"]) == (True, None)
    assert (calls[1]["ok"], calls[1]["error_code"]) == (False, 400)
    assert calls[1]["description"] == "Bad Request: message text is empty"
    assert calls[2]["params"] == {"chat_id": chat, "text": "hello"} and calls[2]["chat_id"] == chat
    assert calls[2]["result"]["text"] == "hello"
    assert calls[2]["bot_id"] == sim.bot.id and calls[2]["bot_username"] == sim.bot.username


def test_calls_never_hold_tokens_or_secrets(api: BotApiClient, sim: SimServer) -> None:
    api.ok("setWebhook", url="http://127.0.0.1:9/hook", secret_token="VerySecretValue123")
    api.error("getMe", token="123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw")
    dump = json.dumps(sim.control.calls())
    assert sim.token not in dump and sim.token.split(":")[1] not in dump
    assert "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw" not in dump
    assert "VerySecretValue123" not in dump
    assert "VerySecretValue123" not in json.dumps(sim.control.bots())


def test_calls_filters_and_cursor(api: BotApiClient, api2: BotApiClient, sim: SimServer) -> None:
    a, b = (sim.state.create_chat("supergroup", name).id for name in "AB")
    api.ok("sendMessage", chat_id=a, text="1")
    cursor = sim.control.calls()[-1]["seq"]
    api.ok("sendMessage", chat_id=b, text="2")
    api2.ok("sendMessage", chat_id=a, text="3")
    api.ok("getMe")
    assert [c["params"]["text"] for c in sim.control.calls("sendmessage", chat_id=a)] == ["1", "3"]
    assert [c["params"]["text"] for c in sim.control.calls("sendMessage", bot=sim.bots[1].username)] == ["3"]
    assert [c["params"]["text"] for c in sim.control.calls("sendMessage", bot=sim.bot.id)] == ["1", "2"]
    assert [c["method"] for c in sim.control.calls(since=cursor)] == ["sendMessage", "sendMessage", "getMe"]
    assert len(sim.control.calls(limit=1)) == 1 and sim.control.calls(limit=1)[0]["method"] == "getMe"
    assert sim.control.calls(ok=False) == []


def test_error_fault_for_next_calls(api: BotApiClient, sim: SimServer) -> None:
    chat = sim.state.create_chat("supergroup", "S").id
    fault = sim.control.add_fault("error", method="sendmessage", chat_id=chat, times=2, error_code=403,
                                  description="Forbidden: bot was blocked by the user")  # fmt: skip
    assert fault["id"] > 0
    other = sim.state.create_chat("supergroup", "T").id
    assert api.ok("sendMessage", chat_id=other, text="other chats are fine")
    for _ in range(2):
        assert api.error("sendMessage", chat_id=chat, text="x") == (403, "Forbidden: bot was blocked by the user", None)
    assert api.ok("sendMessage", chat_id=chat, text="x")
    assert sim.control.faults() == []
    failed = sim.control.calls("sendMessage", chat_id=chat, ok=False)
    assert len(failed) == 2 and failed[0]["fault_id"] == fault["id"]


def test_fault_with_parameters_and_bot_filter(api: BotApiClient, api2: BotApiClient, sim: SimServer) -> None:
    sim.control.add_fault("error", method="getChat", bot=sim.bots[1].id, error_code=400,
                          description="Bad Request: group chat was upgraded to a supergroup chat",
                          parameters={"migrate_to_chat_id": -1001234})  # fmt: skip
    chat = sim.state.create_chat("supergroup", "S").id
    assert api.ok("getChat", chat_id=chat)["id"] == chat
    assert api2.error("getChat", chat_id=chat)[2] == {"migrate_to_chat_id": -1001234}


def test_flood_storm(api: BotApiClient, sim: SimServer) -> None:
    sim.control.add_fault("flood", method="sendMessage", times=3, retry_after=4)
    chat = sim.state.create_chat("supergroup", "S").id
    for _ in range(3):
        answer = api("sendMessage", chat_id=chat, text="x")
        assert answer.status == 429 and answer.body["parameters"] == {"retry_after": 4}
        assert answer.headers["retry-after"] == "4"
    assert api.ok("sendMessage", chat_id=chat, text="x")


def test_raw_5xx_fault(api: BotApiClient, sim: SimServer) -> None:
    sim.control.add_fault("status", method="getMe", status=502)
    answer = api("getMe")
    assert answer.status == 502 and "502 Bad Gateway" in answer.body
    assert answer.headers["content-type"].startswith("text/html")
    assert sim.control.calls("getMe")[-1]["error_code"] == 502
    assert api.ok("getMe")


@pytest.mark.parametrize("apply", [True, False])
def test_hang_fault(api: BotApiClient, sim: SimServer, apply: bool) -> None:
    chat = sim.state.create_chat("supergroup", "S").id
    sim.control.add_fault("hang", method="sendMessage", seconds=1.0, apply=apply)
    with pytest.raises(httpx.ReadTimeout):
        api.http.post(api.url("sendMessage"), json={"chat_id": chat, "text": "late"}, timeout=0.3)
    time.sleep(1.0)
    deadline = time.monotonic() + 5
    while not sim.control.calls("sendMessage") and time.monotonic() < deadline:
        time.sleep(0.05)
    # applied: the message was sent although the client gave up (the ambiguous case)
    assert len(sim.control.messages(chat, sender="bots")) == (1 if apply else 0)


def test_fault_list_and_removal(sim: SimServer) -> None:
    fault = sim.control.add_fault("error", method="getMe", times=None, error_code=500)
    assert [f["id"] for f in sim.control.faults()] == [fault["id"]]
    sim.control.remove_fault(fault["id"])
    assert sim.control.faults() == []
    with pytest.raises(SimControlError) as err:
        sim.control.add_fault("explode")
    assert err.value.status == 400


def test_control_errors_are_json(sim: SimServer) -> None:
    with pytest.raises(SimControlError) as err:
        sim.control.chat(-42)
    assert err.value.status == 404 and "unknown chat" in err.value.message
    with pytest.raises(SimControlError):
        sim.control.create_chat("channelz")


def test_reset_forgets_the_world_but_keeps_bots(api: BotApiClient, sim: SimServer) -> None:
    chat = sim.control.create_chat("supergroup", "S")["id"]
    api.ok("sendMessage", chat_id=chat, text="x")
    sim.control.reset()
    assert sim.control.chats() == [] and sim.control.calls() == []
    assert api.ok("getMe")["id"] == sim.bot.id


def test_create_bot_returns_a_generated_token_once(sim: SimServer) -> None:
    created = sim.control.create_bot(username="extra_sim_bot")
    client = BotApiClient(sim.base_url, created["token"])
    assert client.ok("getMe")["username"] == "extra_sim_bot"
    listed = next(b for b in sim.control.bots() if b["id"] == created["id"])
    assert "token" not in listed
    client.http.close()


def test_join_request_for_a_member_is_refused(sim: SimServer) -> None:
    chat = sim.control.create_chat("supergroup", "S", members=[2001])["id"]
    with pytest.raises(SimControlError) as err:
        sim.control.join_request(chat, 2001)
    assert err.value.status == 409


def test_users_can_be_created_with_chosen_ids(sim: SimServer) -> None:
    user = sim.control.create_user("Ann", id=4242, username="ann")
    assert user == {"id": 4242, "is_bot": False, "first_name": "Ann", "username": "ann"}
    chat = sim.control.create_chat("supergroup", "S")["id"]
    sim.control.add_member(chat, 4242, status="administrator", rights={"can_invite_users": True})
    assert next(m for m in sim.control.chat(chat)["members"] if m["user"]["id"] == 4242)["can_invite_users"]
