"""The Bot API's HTTP surface: URL form, tokens, method names, transports and envelopes."""

from __future__ import annotations

import pytest

from telegram_sim.server import SimServer
from tests.sim.conftest import BotApiClient


def test_get_me_envelope_and_user_shape(api: BotApiClient, sim: SimServer) -> None:
    answer = api("getMe")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("application/json")
    assert set(answer.body) == {"ok", "result"}
    me = answer.body["result"]
    assert me["id"] == sim.bot.id == int(sim.token.split(":")[0])
    assert me["is_bot"] is True and me["username"] == sim.bot.username
    assert me["can_join_groups"] is True and me["can_read_all_group_messages"] is False


@pytest.mark.parametrize("name", ["getMe", "getme", "GETME", "gEtMe"])
def test_method_names_are_case_insensitive(api: BotApiClient, name: str) -> None:
    assert api.ok(name)["is_bot"] is True


@pytest.mark.parametrize("via", ["json", "form", "query", "get", "multipart"])
def test_parameters_from_every_transport(api: BotApiClient, sim: SimServer, via: str) -> None:
    chat = sim.state.create_chat("supergroup", "T")
    message = api("sendMessage", via=via, chat_id=chat.id, text="hello *there*", parse_mode="Markdown").body
    assert message["ok"] is True, message
    assert message["result"]["text"] == "hello there"
    assert message["result"]["entities"] == [{"type": "bold", "offset": 6, "length": 5}]


def test_legacy_aliases_reach_the_same_methods(api: BotApiClient, sim: SimServer) -> None:
    chat = sim.state.create_chat("supergroup", "T", members=[111, 222])
    assert (
        api.ok("getChatMembersCount", chat_id=chat.id) == api.ok("getChatMemberCount", chat_id=chat.id) == 5
    )  # owner, 2 users, 2 bots
    assert api.ok("kickChatMember", chat_id=chat.id, user_id=111) is True
    assert api.ok("getChatMember", chat_id=chat.id, user_id=111)["status"] == "kicked"


def test_unknown_method_is_404(api: BotApiClient) -> None:
    assert api.error("sendPigeon") == (404, "Not Found: method not found", None)
    assert api.error("") == (404, "Not Found: method not found", None)


@pytest.mark.parametrize(
    "token",
    ["nocolon", "0123:abc", "abc:def", "123:" + "x" * 80, "-5:abc"],
)
def test_malformed_token_is_401_invalid_token(api: BotApiClient, token: str) -> None:
    assert api.error("getMe", token=token) == (401, "Unauthorized: invalid token specified", None)


def test_well_formed_unknown_token_is_401_unauthorized(api: BotApiClient) -> None:
    assert api.error("getMe", token="123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw") == (401, "Unauthorized", None)
    # checked before the method: an unknown method with an unknown token is still 401
    assert api.error("sendPigeon", token="123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw")[0] == 401


def test_paths_outside_the_bot_api_are_404_envelopes(api: BotApiClient, sim: SimServer) -> None:
    response = api.http.get(f"{sim.base_url}/favicon.ico")
    assert response.status_code == 404
    assert response.json() == {"ok": False, "error_code": 404, "description": "Not Found"}


def test_several_bots_have_their_own_identity(api: BotApiClient, api2: BotApiClient) -> None:
    first, second = api.ok("getMe"), api2.ok("getMe")
    assert first["id"] != second["id"] and first["username"] != second["username"]


def test_parameters_key_is_absent_on_plain_errors(api: BotApiClient) -> None:
    answer = api("sendMessage", chat_id=-1009, text="x")
    assert answer.status == 400
    assert answer.body == {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}


def test_success_may_carry_a_description(api: BotApiClient, receiver_url: str) -> None:
    answer = api("setWebhook", url=receiver_url)
    assert answer.body == {"ok": True, "result": True, "description": "Webhook was set"}


@pytest.fixture
def receiver_url() -> str:
    return "http://127.0.0.1:9/hook"


def test_bad_json_body_is_400(api: BotApiClient) -> None:
    response = api.http.post(api.url("getMe"), content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["description"].startswith("Bad Request: ")
