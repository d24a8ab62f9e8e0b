"""sendMessage / sendPhoto: chat access, rights, formatting and length rules with Telegram's texts."""

from __future__ import annotations

import pytest

from telegram_sim.server import SimServer
from tests.sim.conftest import BotApiClient


@pytest.fixture
def group(sim: SimServer) -> int:
    return sim.state.create_chat("group", "Basic", members=3).id


@pytest.fixture
def supergroup(sim: SimServer) -> int:
    return sim.state.create_chat("supergroup", "Super", members=3).id


def test_message_result_shape(api: BotApiClient, sim: SimServer, group: int) -> None:
    message = api.ok("sendMessage", chat_id=group, text="hi")
    assert message["from"]["id"] == sim.bot.id and message["from"]["is_bot"] is True
    assert message["chat"] == {"id": group, "title": "Basic", "type": "group", "all_members_are_administrators": True}
    assert message["text"] == "hi" and isinstance(message["date"], int)
    assert "entities" not in message
    second = api.ok("sendMessage", chat_id=group, text="again")
    assert second["message_id"] == message["message_id"] + 1


def test_unknown_chat(api: BotApiClient, sim: SimServer) -> None:
    assert api.error("sendMessage", chat_id=-100123, text="x") == (400, "Bad Request: chat not found", None)
    assert api.error("sendMessage", chat_id="@nosuchgroup", text="x")[1] == "Bad Request: chat not found"
    # a chat that exists but this bot never belonged to is unknown to it as well
    other = sim.state.create_chat("supergroup", "Other", bots=[sim.bots[1].id]).id
    assert api.error("sendMessage", chat_id=other, text="x")[1] == "Bad Request: chat not found"


def test_chat_id_is_required(api: BotApiClient) -> None:
    assert api.error("sendMessage", text="x") == (400, "Bad Request: chat_id is empty", None)


@pytest.mark.parametrize(
    ("chat_type", "bot_status", "expected"),
    [
        ("group", "kicked", "Forbidden: bot was kicked from the group chat"),
        ("group", "left", "Forbidden: bot is not a member of the group chat"),
        ("supergroup", "kicked", "Forbidden: bot was kicked from the supergroup chat"),
        ("supergroup", "left", "Forbidden: bot is not a member of the supergroup chat"),
    ],
)
def test_bot_removed_from_chat(api: BotApiClient, sim: SimServer, chat_type: str, bot_status: str,
                               expected: str) -> None:  # fmt: skip
    chat = sim.state.create_chat(chat_type, "Gone").id
    sim.control.set_bot(chat, sim.bot.id, status=bot_status)
    assert api.error("sendMessage", chat_id=chat, text="x") == (403, expected, None)
    assert api.error("sendPhoto", chat_id=chat, photo="https://example.com/a.jpg")[1] == expected


def test_deleted_group_and_supergroup(api: BotApiClient, sim: SimServer, group: int, supergroup: int) -> None:
    sim.control.delete_chat(group)
    sim.control.delete_chat(supergroup)
    assert api.error("sendMessage", chat_id=group, text="x") == (403, "Forbidden: the group chat was deleted", None)
    assert api.error("sendMessage", chat_id=supergroup, text="x") == (400, "Bad Request: chat not found", None)


def test_upgraded_group_answers_migrate_to_chat_id(api: BotApiClient, sim: SimServer, group: int) -> None:
    new = sim.control.upgrade(group)
    assert new["type"] == "supergroup" and str(new["id"]).startswith("-100")
    assert new["member_count"] == sim.state.chat(group).member_count == 6
    code, description, parameters = api.error("sendMessage", chat_id=group, text="x")
    assert (code, description) == (400, "Bad Request: group chat was upgraded to a supergroup chat")
    assert parameters == {"migrate_to_chat_id": new["id"]}
    assert api.error("getChatMemberCount", chat_id=group)[2] == {"migrate_to_chat_id": new["id"]}
    assert api.ok("getChat", chat_id=group)["type"] == "group"  # reading the old group still works
    assert api.ok("sendMessage", chat_id=new["id"], text="moved")["chat"]["type"] == "supergroup"
    assert api.ok("getChatMemberCount", chat_id=new["id"]) == 6


def test_send_rights(api: BotApiClient, sim: SimServer) -> None:
    muted = sim.state.create_chat(
        "supergroup", "Muted", permissions={"can_send_messages": False, "can_send_photos": False},
        bots={sim.bot.id: {"status": "member"}},
    )  # fmt: skip
    assert api.error("sendMessage", chat_id=muted.id, text="x") == (
        400, "Bad Request: not enough rights to send text messages to the chat", None)  # fmt: skip
    assert api.error("sendPhoto", chat_id=muted.id, photo="https://e.com/p.jpg")[1] == (
        "Bad Request: not enough rights to send photos to the chat")  # fmt: skip
    sim.control.promote_bot(muted.id, sim.bot.id)
    assert api.ok("sendMessage", chat_id=muted.id, text="admins always can")["text"] == "admins always can"
    sim.control.set_bot(muted.id, sim.bot.id, status="restricted", rights={"can_send_messages": True})
    assert api.ok("sendMessage", chat_id=muted.id, text="x")
    assert api.error("sendPhoto", chat_id=muted.id, photo="https://e.com/p.jpg")[1].endswith("photos to the chat")


def test_text_empty(api: BotApiClient, group: int) -> None:
    assert api.error("sendMessage", chat_id=group, text="") == (400, "Bad Request: message text is empty", None)
    assert api.error("sendMessage", chat_id=group)[1] == "Bad Request: message text is empty"
    assert api.error("sendMessage", chat_id=group, text="  \n ")[1] == "Bad Request: message must be non-empty"


def test_text_length_counts_utf16_units_after_parsing(api: BotApiClient, group: int) -> None:
    assert api.ok("sendMessage", chat_id=group, text="a" * 4096)
    assert api.error("sendMessage", chat_id=group, text="a" * 4097) == (400, "Bad Request: message is too long", None)
    assert api.ok("sendMessage", chat_id=group, text="😀" * 2048)  # 4096 UTF-16 code units
    assert api.error("sendMessage", chat_id=group, text="😀" * 2049)[1] == "Bad Request: message is too long"
    # markup does not count: 4096 visible characters inside bold
    assert api.ok("sendMessage", chat_id=group, text="*" + "a" * 4096 + "*", parse_mode="Markdown")


def test_caption_length(api: BotApiClient, group: int) -> None:
    assert api.ok("sendPhoto", chat_id=group, photo="https://e.com/p.jpg", caption="c" * 1024)["caption"] == "c" * 1024
    assert api.error("sendPhoto", chat_id=group, photo="https://e.com/p.jpg", caption="c" * 1025) == (
        400, "Bad Request: message caption is too long", None)  # fmt: skip


@pytest.mark.parametrize(
    ("text", "mode", "error"),
    [
        ("a_b", "Markdown", "Can't find end of the entity starting at byte offset 1"),
        ("é *bold", "Markdown", "Can't find end of the entity starting at byte offset 3"),
        ("see [link", "Markdown", "Can't find end of the entity starting at byte offset 4"),
        ("Hello!", "MarkdownV2", "Character '!' is reserved and must be escaped with the preceding '\\'"),
        ("1.5", "MarkdownV2", "Character '.' is reserved and must be escaped with the preceding '\\'"),
        ("*bold", "MarkdownV2", "Can't find end of Bold entity at byte offset 0"),
        ("ok _it", "MarkdownV2", "Can't find end of Italic entity at byte offset 3"),
        ("<b>x", "HTML", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<blink>x</blink>", "HTML", 'Unsupported start tag "blink" at byte offset 0'),
        ("<b>x</i>", "HTML", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
    ],
)
def test_parse_errors(api: BotApiClient, group: int, text: str, mode: str, error: str) -> None:
    expected = f"Bad Request: can't parse entities: {error}"
    assert api.error("sendMessage", chat_id=group, text=text, parse_mode=mode) == (400, expected, None)
    assert api.error("sendPhoto", chat_id=group, photo="https://e.com/p.jpg", caption=text, parse_mode=mode)[1] == (
        expected)  # fmt: skip


def test_markup_is_parsed_before_the_chat_is_looked_up(api: BotApiClient) -> None:
    assert "can't parse entities" in api.error("sendMessage", chat_id=-1, text="a_b", parse_mode="Markdown")[1]


def test_unsupported_parse_mode(api: BotApiClient, group: int) -> None:
    assert api.error("sendMessage", chat_id=group, text="x", parse_mode="Markdown3")[1] == (
        "Bad Request: unsupported parse_mode")  # fmt: skip
    assert api.ok("sendMessage", chat_id=group, text="*x*", parse_mode="markdown")["text"] == "x"


def test_entities_in_utf16_offsets(api: BotApiClient, group: int) -> None:
    message = api.ok("sendMessage", chat_id=group, text="😀 <b>bold</b> <a href='https://t.me/x'>l</a>",
                     parse_mode="HTML")  # fmt: skip
    assert message["text"] == "😀 bold l"
    assert message["entities"] == [
        {"type": "bold", "offset": 3, "length": 4},
        {"type": "text_link", "offset": 8, "length": 1, "url": "https://t.me/x"},
    ]


def test_photo_result_and_file_id_reuse(api: BotApiClient, group: int) -> None:
    first = api.ok("sendPhoto", chat_id=group, photo="https://example.com/cat.jpg", caption="*cat*",
                   parse_mode="Markdown")  # fmt: skip
    sizes = first["photo"]
    assert len(sizes) >= 2 and sizes[-1]["width"] > sizes[0]["width"]
    assert {"file_id", "file_unique_id", "width", "height"} <= set(sizes[0])
    assert first["caption"] == "cat" and first["caption_entities"] == [{"type": "bold", "offset": 0, "length": 3}]
    again = api.ok("sendPhoto", chat_id=group, photo=sizes[-1]["file_id"])
    assert again["photo"] == sizes and "caption" not in again
    uploaded = api("sendPhoto", via="multipart", chat_id=group, photo=("p.jpg", b"\xff\xd8jpeg", "image/jpeg"))
    assert uploaded.status == 200 and uploaded.body["result"]["photo"]


@pytest.mark.parametrize(
    ("photo", "error"),
    [
        ("", "Bad Request: there is no photo in the request"),
        ("https://cdn.example.invalid/a.jpg", "Bad Request: failed to get HTTP URL content"),
        ("https://example.com/page.html", "Bad Request: wrong type of the web page content"),
        ("not-a-file-id", "Bad Request: wrong file identifier/HTTP URL specified"),
    ],
)
def test_photo_errors(api: BotApiClient, group: int, photo: str, error: str) -> None:
    assert api.error("sendPhoto", chat_id=group, photo=photo) == (400, error, None)


def test_private_chats(api: BotApiClient, sim: SimServer) -> None:
    user = sim.control.create_user("Pat")["id"]
    assert api.error("sendMessage", chat_id=user, text="hi")[1] == "Bad Request: chat not found"
    sim.control.private_message(user, "/start", bot=sim.bot.id)
    assert api.ok("sendMessage", chat_id=user, text="hi")["chat"] == {"id": user, "first_name": "Pat",
                                                                     "type": "private"}  # fmt: skip
    sim.control.block_bot(user, sim.bot.id)
    assert api.error("sendMessage", chat_id=user, text="hi") == (403, "Forbidden: bot was blocked by the user", None)
    sim.control.unblock_bot(user, sim.bot.id)
    sim.control.deactivate_user(user)
    assert api.error("sendMessage", chat_id=user, text="hi") == (403, "Forbidden: user is deactivated", None)


def test_reply_markup(api: BotApiClient, group: int) -> None:
    keyboard = {"inline_keyboard": [[{"text": "Open", "url": "https://t.me/x"}]]}
    assert api.ok("sendMessage", chat_id=group, text="x", reply_markup=keyboard)["reply_markup"] == keyboard
    assert api.ok("sendMessage", via="form", chat_id=group, text="x", reply_markup=keyboard)["reply_markup"] == keyboard
    assert api.error("sendMessage", chat_id=group, text="x", reply_markup="{oops")[1] == (
        "Bad Request: can't parse reply keyboard markup JSON object")  # fmt: skip


def test_reply_to_missing_message(api: BotApiClient, group: int) -> None:
    assert api.error("sendMessage", chat_id=group, text="x", reply_parameters={"message_id": 999})[1] == (
        "Bad Request: message to be replied not found")  # fmt: skip
    sent = api.ok("sendMessage", chat_id=group, text="first")
    reply = api.ok("sendMessage", chat_id=group, text="x", reply_to_message_id=sent["message_id"])
    assert reply["reply_to_message"]["message_id"] == sent["message_id"]


def test_sent_messages_are_listed_per_chat(api: BotApiClient, sim: SimServer, group: int, supergroup: int) -> None:
    api.ok("sendMessage", chat_id=group, text="broadcast #A1")
    api.ok("sendPhoto", chat_id=supergroup, photo="https://e.com/p.jpg", caption="broadcast #A2")
    rows = sim.control.messages(group, sender="bots")
    assert [(r["text"], r["sent_by_bot"]) for r in rows] == [("broadcast #A1", sim.bot.id)]
    assert [r["caption"] for r in sim.control.messages(supergroup, sender="bots")] == ["broadcast #A2"]
    assert sim.state.chat(group).member_count == len(sim.control.chat(group)["members"])


def test_an_upload_is_counted_once_and_its_file_id_reused(api: BotApiClient, group: int, sim: SimServer) -> None:
    control = sim.control
    data = b"\x89PNG\r\n\x1a\n" + b"p" * 100
    uploaded = api("sendPhoto", via="multipart", chat_id=group, photo=("poster.png", data, "image/png"))
    assert uploaded.status == 200
    sizes = uploaded.body["result"]["photo"]
    assert all({"file_id", "file_unique_id", "width", "height", "file_size"} <= set(s) for s in sizes)
    for _ in range(3):
        assert api.ok("sendPhoto", chat_id=group, photo=sizes[-1]["file_id"])["photo"] == sizes
    seen = control.uploads()
    assert seen["count"] == 1
    (row,) = seen["uploads"]
    assert (row["method"], row["filename"], row["size"]) == ("sendPhoto", "poster.png", len(data))
    assert str(row["chat_id"]) == str(group)
    # A file id of the right shape that this server never issued fails like any unknown id.
    forged = sizes[-1]["file_id"][:-4] + "AAAA"
    assert api.error("sendPhoto", chat_id=group, photo=forged) == (
        400, "Bad Request: wrong file identifier/HTTP URL specified", None)  # fmt: skip
    assert control.uploads()["count"] == 1
