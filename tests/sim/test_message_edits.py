"""editMessageText / editMessageCaption, deleteMessages, pinChatMessage / unpinChatMessage: Telegram's
rules and texts, and the control API's record of each message (current text, history, pinned, deleted)."""

from __future__ import annotations

import pytest

from telegram_sim.message_edits import NOT_MODIFIED
from telegram_sim.server import SimServer
from tests.sim.conftest import BotApiClient


@pytest.fixture
def supergroup(sim: SimServer) -> int:
    return sim.state.create_chat("supergroup", "Super", members=3).id


def _row(sim: SimServer, chat: int, message_id: int) -> dict:
    rows = sim.control.messages(chat, include_deleted=True)
    return next(r for r in rows if r["message_id"] == message_id)


def test_edit_text_keeps_history(api: BotApiClient, sim: SimServer, supergroup: int) -> None:
    sent = api.ok("sendMessage", chat_id=supergroup, text="Hello wrold")
    edited = api.ok("editMessageText", chat_id=supergroup, message_id=sent["message_id"], text="Hello *world*",
                    parse_mode="Markdown")  # fmt: skip
    assert edited["text"] == "Hello world" and edited["entities"][0]["type"] == "bold"
    assert isinstance(edited["edit_date"], int)
    row = _row(sim, supergroup, sent["message_id"])
    assert row["text"] == "Hello world" and row["history"][0]["text"] == "Hello wrold"
    again = api.error("editMessageText", chat_id=supergroup, message_id=sent["message_id"], text="Hello *world*",
                      parse_mode="Markdown")  # fmt: skip
    assert again == (400, f"Bad Request: {NOT_MODIFIED}", None)


def test_edit_errors(api: BotApiClient, api2: BotApiClient, sim: SimServer, supergroup: int) -> None:
    sent = api.ok("sendMessage", chat_id=supergroup, text="x")
    mid = sent["message_id"]
    assert api.error("editMessageText", chat_id=supergroup, message_id=9999, text="y")[1] == (
        "Bad Request: message to edit not found"
    )
    sim.control.set_bot(supergroup, sim.bots[1].id, action="promote")
    assert api2.error("editMessageText", chat_id=supergroup, message_id=mid, text="y")[1] == (
        "Bad Request: message can't be edited"
    )
    assert api.error("editMessageCaption", chat_id=supergroup, message_id=mid, caption="y")[1] == (
        "Bad Request: there is no caption in the message to edit"
    )
    photo = api.ok("sendPhoto", chat_id=supergroup, photo="https://example.com/a.jpg", caption="c")
    assert api.error("editMessageText", chat_id=supergroup, message_id=photo["message_id"], text="y")[1] == (
        "Bad Request: there is no text in the message to edit"
    )
    assert (
        api.ok("editMessageCaption", chat_id=supergroup, message_id=photo["message_id"], caption="d")["caption"] == "d"
    )
    api.ok("deleteMessages", chat_id=supergroup, message_ids=[mid])
    assert api.error("editMessageText", chat_id=supergroup, message_id=mid, text="z")[1] == (
        "Bad Request: message to edit not found"
    )


def test_delete_messages_skips_missing_and_keeps_48h_rule(api: BotApiClient, sim: SimServer, supergroup: int) -> None:
    ids = [api.ok("sendMessage", chat_id=supergroup, text=f"m{i}")["message_id"] for i in range(3)]
    assert api.error("deleteMessages", chat_id=supergroup, message_ids=[])[0] == 400
    assert api.error("deleteMessages", chat_id=supergroup, message_ids=list(range(1, 102)))[0] == 400
    sim.control.delete_message(supergroup, ids[0])  # an admin deleted it in the app
    assert api.ok("deleteMessages", chat_id=supergroup, message_ids=[ids[0], ids[1], 5000]) is True
    assert _row(sim, supergroup, ids[1])["deleted"] is True
    sim.control.age_messages(48 * 3600, chat_id=supergroup, message_id=ids[2])
    assert api.error("deleteMessages", chat_id=supergroup, message_ids=[ids[2]])[1] == (
        "Bad Request: message can't be deleted for everyone"
    )
    assert _row(sim, supergroup, ids[2])["deleted"] is False


def test_pin_needs_the_right(api: BotApiClient, sim: SimServer, supergroup: int) -> None:
    mid = api.ok("sendMessage", chat_id=supergroup, text="pin me")["message_id"]
    assert api.ok("pinChatMessage", chat_id=supergroup, message_id=mid, disable_notification=True) is True
    assert _row(sim, supergroup, mid)["pinned"] is True
    assert api.ok("unpinChatMessage", chat_id=supergroup, message_id=mid) is True
    assert _row(sim, supergroup, mid)["pinned"] is False
    sim.control.set_bot(supergroup, sim.bot.id, action="promote", rights={"can_pin_messages": False})
    assert api.error("pinChatMessage", chat_id=supergroup, message_id=mid)[1] == (
        "Bad Request: not enough rights to manage pinned messages in the chat"
    )
    assert api.error("unpinChatMessage", chat_id=supergroup, message_id=mid)[1] == (
        "Bad Request: not enough rights to manage pinned messages in the chat"
    )


def test_texts_of_the_bot_api_server(api: BotApiClient, sim: SimServer, supergroup: int) -> None:
    """The Bot API server looks the message up before the rights and words its checks of message_ids
    as below (telegram-bot-api's check_message / get_message_ids)."""
    PIN_NOT_FOUND = "Bad Request: message to pin not found"
    mid = api.ok("sendMessage", chat_id=supergroup, text="x")["message_id"]
    assert api.error("editMessageText", chat_id=supergroup, text="y")[1] == "Bad Request: message to edit not found"
    assert api.error("pinChatMessage", chat_id=supergroup)[1] == "Bad Request: message to pin not found"
    assert api.error("pinChatMessage", chat_id=supergroup, message_id=9999)[1] == PIN_NOT_FOUND
    assert api.ok("unpinChatMessage", chat_id=supergroup, message_id=mid) is True  # not pinned: no error
    assert api.error("unpinChatMessage", chat_id=supergroup, message_id=9999)[1] == (
        "Bad Request: message to unpin not found"
    )
    assert api.error("unpinChatMessage", chat_id=supergroup)[1] == "Bad Request: message to unpin not found"
    sim.control.set_bot(supergroup, sim.bot.id, action="promote", rights={"can_pin_messages": False})
    assert api.error("pinChatMessage", chat_id=supergroup, message_id=9999)[1] == PIN_NOT_FOUND
    for ids, text in [
        (None, "message identifiers are not specified"),
        ({"a": 1}, "expected an Array of message identifiers"),
        ([1.5], "message identifier must be a Number"),
        (["x"], "can't parse message identifier as a Number"),
        ([0], "invalid message identifier specified"),
        (list(range(1, 102)), "too many message identifiers specified"),
    ]:
        params = {} if ids is None else {"message_ids": ids}
        assert api.error("deleteMessages", chat_id=supergroup, **params)[1] == f"Bad Request: {text}", ids


def test_edits_keep_markup_history_and_count_against_flood_limits(api: BotApiClient, sim: SimServer) -> None:
    group = sim.state.create_chat("supergroup", "Flood", members=1).id
    sim.control.set_config(enforce_flood_limits=True, per_group_per_min=3, per_chat_burst=3, per_chat_per_sec=100)
    keyboard = {"inline_keyboard": [[{"text": "Open", "url": "https://example.org"}]]}
    mid = api.ok("sendMessage", chat_id=group, text="v0", reply_markup=keyboard)["message_id"]
    api.ok("editMessageText", chat_id=group, message_id=mid, text="v1", reply_markup=keyboard)
    api.ok("editMessageText", chat_id=group, message_id=mid, text="v2")  # no markup: the keyboard goes
    status, description, params = api.error("editMessageText", chat_id=group, message_id=mid, text="v3")
    assert status == 429 and description.startswith("Too Many Requests: retry after") and params
    row = _row(sim, group, mid)
    assert row["text"] == "v2" and row["reply_markup"] is None
    assert [h["text"] for h in row["history"]] == ["v0", "v1"]
    assert row["history"][1]["reply_markup"] == keyboard


def test_inline_keyboards_are_parsed_as_the_bot_api_server_does(api: BotApiClient, supergroup: int) -> None:
    for markup, text in [
        ("{not json", "can't parse reply keyboard markup JSON object"),
        ([1], "object expected as reply markup"),
        ({"inline_keyboard": [{"text": "a"}]}, 'Field "inline_keyboard" of the InlineKeyboardMarkup must be an Array '
         "of Arrays"),
        ({"inline_keyboard": [["a"]]}, "can't parse inline keyboard button: InlineKeyboardButton must be an Object"),
        ({"inline_keyboard": [[{"url": "https://a.org"}]]}, "can't parse inline keyboard button: Can't find field "
         '"text"'),
        ({"inline_keyboard": [[{"text": "a"}]]}, "can't parse inline keyboard button: Text buttons are unallowed in "
         "the inline keyboard"),
    ]:  # fmt: skip
        assert api.error("sendMessage", chat_id=supergroup, text="x", reply_markup=markup)[1] == f"Bad Request: {text}"
    keyboard = {"inline_keyboard": [[{"text": "a", "url": "https://a.org"}]]}
    assert api.ok("sendMessage", chat_id=supergroup, text="x", reply_markup=keyboard)["reply_markup"] == keyboard
