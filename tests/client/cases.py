"""Bot API situations, each set up in the simulator through its control API, with the outcome our
client and python-telegram-bot must both see. Used by tests/client/test_telegram_api.py (our classes
and attributes) and tests/sim/test_third_party_parity.py (ours vs PTB on identical worlds).

The expectations come from Telegram's documented behaviour (the Bot API server's error texts and how
python-telegram-bot classifies them), not from the simulator's code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import telegram.error as ptb

from telegram_sim.control import SimControl
from workers import telegram_errors as ours
from workers.telegram_errors import ForbiddenKind

# Well-formed (passes the Bot API's shape check) but belongs to no bot: 401 "Unauthorized".
UNKNOWN_TOKEN = "987654321:" + "AAE" + "q" * 32
HOOK_URL = "https://127.0.0.1:9/tgms-hook"
MISSING_CHAT = -1009999999999


@dataclass
class World:
    """One fresh simulated world for one call; `expect` carries ids a check compares against."""

    ctl: SimControl
    bot_id: int
    expect: dict[str, Any] = field(default_factory=dict)

    def chat(self, chat_type: str = "supergroup", **spec: Any) -> int:
        spec.setdefault("title", f"Test {chat_type}")  # identical in every world
        return int(self.ctl.create_chat(chat_type, **spec)["id"])

    def user(self) -> int:
        return int(self.ctl.create_user()["id"])

    def member(self, chat_id: int) -> int:
        user_id = self.user()
        self.ctl.add_member(chat_id, user_id)
        return user_id


@dataclass(frozen=True)
class Call:
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    token: str | None = None  # None: the simulator's bot


@dataclass(frozen=True)
class Case:
    name: str
    setup: Callable[[World], Call]
    ours: type[Exception] | None  # None: success
    ptb: type[Exception] | None
    # Extra assertions on our outcome (result or exception) in its world.
    check: Callable[[Any, World], None] | None = None
    read_timeout: float = 10.0

    def __str__(self) -> str:
        return self.name


# ------------------------------------------------------------------ setups


def _send(chat_type: str, bot_action: str | None = None, *, delete: bool = False) -> Callable[[World], Call]:
    def setup(w: World) -> Call:
        chat_id = w.chat(chat_type)
        if bot_action:
            w.ctl.set_bot(chat_id, w.bot_id, action=bot_action)
        if delete:
            w.ctl.delete_chat(chat_id)
        return Call("sendMessage", {"chat_id": chat_id, "text": "hello"})

    return setup


def _migrated(w: World) -> Call:
    old = w.chat("group")
    w.expect["new_chat_id"] = int(w.ctl.upgrade(old)["id"])
    return Call("sendMessage", {"chat_id": old, "text": "hello"})


def _join_request(approve: bool) -> Callable[[World], Call]:
    def setup(w: World) -> Call:
        chat_id = w.chat()
        user_id = w.user()
        w.ctl.join_request(chat_id, user_id)
        w.expect.update(chat_id=chat_id, user_id=user_id)
        return Call(
            "approveChatJoinRequest" if approve else "declineChatJoinRequest", {"chat_id": chat_id, "user_id": user_id}
        )

    return setup


def _dm_requester(w: World) -> Call:
    """The join gate's verification message: to the requester's user_chat_id, with one button."""
    chat_id = w.chat()
    request = w.ctl.join_request(chat_id, {"first_name": "Ann"})  # the same name in both worlds
    markup = {"inline_keyboard": [[{"text": "I'm human", "callback_data": "jg:token:code"}]]}
    return Call("sendMessage", {"chat_id": request["user_chat_id"], "text": "Press the button", "reply_markup": markup})


def _check_dm(result: Any, w: World) -> None:
    _assert(result["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "jg:token:code")


def _answer_unknown_query(w: World) -> Call:
    return Call("answerCallbackQuery", {"callback_query_id": "4242", "text": "too late"})


def _approve_without_request(w: World) -> Call:
    chat_id = w.chat()
    return Call("approveChatJoinRequest", {"chat_id": chat_id, "user_id": w.user()})


def _approve_member(w: World) -> Call:
    chat_id = w.chat()
    return Call("approveChatJoinRequest", {"chat_id": chat_id, "user_id": w.member(chat_id)})


def _approve_without_right(w: World) -> Call:
    chat_id = w.chat(bots={str(w.bot_id): {"status": "administrator", "rights": {"can_invite_users": False}}})
    user_id = w.user()
    w.ctl.join_request(chat_id, user_id)
    return Call("approveChatJoinRequest", {"chat_id": chat_id, "user_id": user_id})


def _text(text: str, parse_mode: str | None = None) -> Callable[[World], Call]:
    def setup(w: World) -> Call:
        params: dict[str, Any] = {"chat_id": w.chat(), "text": text}
        if parse_mode:
            params["parse_mode"] = parse_mode
        return Call("sendMessage", params)

    return setup


def _photo(photo: str, caption: str = "a caption") -> Callable[[World], Call]:
    def setup(w: World) -> Call:
        return Call("sendPhoto", {"chat_id": w.chat(), "photo": photo, "caption": caption})

    return setup


def _on_chat(method: str, chat_type: str = "supergroup", **extra: Any) -> Callable[[World], Call]:
    def setup(w: World) -> Call:
        chat_id = w.chat(chat_type, members=3)
        w.expect["chat_id"] = chat_id
        return Call(method, {"chat_id": chat_id, **extra})

    return setup


def _bot_member(w: World) -> Call:
    chat_id = w.chat()
    return Call("getChatMember", {"chat_id": chat_id, "user_id": w.bot_id})


def _ban(chat_type: str, target: str) -> Callable[[World], Call]:
    def setup(w: World) -> Call:
        chat_id = w.chat(chat_type)
        if target == "owner":
            owner = next(m for m in w.ctl.chat(chat_id)["members"] if m["status"] == "creator")
            user_id = int(owner["user"]["id"])
        else:
            user_id = w.member(chat_id)
        return Call("banChatMember", {"chat_id": chat_id, "user_id": user_id})

    return setup


def _unban(chat_type: str) -> Callable[[World], Call]:
    def setup(w: World) -> Call:
        chat_id = w.chat(chat_type)
        return Call("unbanChatMember", {"chat_id": chat_id, "user_id": w.member(chat_id), "only_if_banned": True})

    return setup


def _blocked(w: World) -> Call:
    user_id = w.user()
    w.ctl.private_message(user_id, "/start", bot=w.bot_id)
    w.ctl.block_bot(user_id, bot=w.bot_id)
    return Call("sendMessage", {"chat_id": user_id, "text": "hello"})


def _fault(kind: str, **spec: Any) -> Callable[[World], Call]:
    def setup(w: World) -> Call:
        chat_id = w.chat()
        w.ctl.add_fault(kind, method="sendMessage", chat_id=chat_id, **spec)
        w.expect["chat_id"] = chat_id
        return Call("sendMessage", {"chat_id": chat_id, "text": "hello"})

    return setup


def _webhook(w: World) -> Call:
    return Call("setWebhook", {"url": HOOK_URL, "secret_token": "parity-secret_42"})


# ------------------------------------------------------------------ checks


def _kind(kind: ForbiddenKind) -> Callable[[Any, World], None]:
    def check(exc: Any, w: World) -> None:
        assert exc.kind is kind, exc.description

    return check


def _check_migrated(exc: Any, w: World) -> None:
    assert exc.new_chat_id == w.expect["new_chat_id"]


def _check_retry_after(seconds: float) -> Callable[[Any, World], None]:
    def check(exc: Any, w: World) -> None:
        assert exc.retry_after == seconds
        assert exc.retryable

    return check


def _check_content(exc: Any, w: World) -> None:
    assert exc.is_content_error and not exc.retryable


def _check_delivery_error(exc: Any, w: World) -> None:
    assert not exc.is_content_error


def _check_code(code: str) -> Callable[[Any, World], None]:
    def check(exc: Any, w: World) -> None:
        assert exc.code == code
        assert not exc.is_content_error

    return check


def _check_approved(result: Any, w: World) -> None:
    assert result is True
    member = w.ctl.chat(w.expect["chat_id"])["members"]
    assert any(m["user"]["id"] == w.expect["user_id"] and m["status"] == "member" for m in member)


def _check_member_count(result: Any, w: World) -> None:
    # The owner, the 3 members and the simulator's bots, as its control API lists them.
    members = w.ctl.chat(w.expect["chat_id"])["members"]
    present = [m for m in members if m["status"] in ("creator", "administrator", "member")]
    assert len(present) >= 5 and result == len(present), (result, len(present))


def _check_server_error(maybe_delivered: bool) -> Callable[[Any, World], None]:
    def check(exc: Any, w: World) -> None:
        assert exc.retryable and exc.maybe_delivered is maybe_delivered

    return check


def _check_hang(exc: Any, w: World) -> None:
    # The simulator carried the call out after the client gave up: "maybe delivered" was right.
    assert exc.maybe_delivered is True
    assert exc.retryable


# ------------------------------------------------------------------ the list

CASES: list[Case] = [
    # successes
    Case("getMe", lambda w: Call("getMe"), None, None, lambda r, w: _assert(r["id"] == w.bot_id and r["is_bot"])),
    Case("sendMessage", _text("hello"), None, None, lambda r, w: _assert(r["text"] == "hello")),
    Case(
        "sendMessage Markdown",
        _text("*bold* text", "Markdown"),
        None,
        None,
        lambda r, w: _assert(r["text"] == "bold text" and r["entities"][0]["type"] == "bold"),
    ),
    Case(
        "sendPhoto by URL",
        _photo("https://example.com/cat.jpg"),
        None,
        None,
        lambda r, w: _assert(r["caption"] == "a caption" and r["photo"]),
    ),
    Case("getChat", _on_chat("getChat"), None, None, lambda r, w: _assert(r["id"] == w.expect["chat_id"])),
    Case("getChatMemberCount", _on_chat("getChatMemberCount"), None, None, _check_member_count),
    Case(
        "getChatMember (the bot)",
        _bot_member,
        None,
        None,
        lambda r, w: _assert(r["status"] == "administrator" and r["can_invite_users"]),
    ),
    Case(
        "getChatAdministrators",
        _on_chat("getChatAdministrators"),
        None,
        None,
        lambda r, w: _assert(any(m["user"]["id"] == w.bot_id for m in r)),
    ),
    Case("approveChatJoinRequest", _join_request(True), None, None, _check_approved),
    Case("declineChatJoinRequest", _join_request(False), None, None, lambda r, w: _assert(r is True)),
    Case("banChatMember", _ban("supergroup", "member"), None, None, lambda r, w: _assert(r is True)),
    Case("unbanChatMember only_if_banned", _unban("supergroup"), None, None, lambda r, w: _assert(r is True)),
    Case("leaveChat", _on_chat("leaveChat"), None, None, lambda r, w: _assert(r is True)),
    Case("setWebhook", _webhook, None, None, lambda r, w: _assert(r is True)),
    Case("getWebhookInfo", lambda w: Call("getWebhookInfo"), None, None, lambda r, w: _assert("url" in r)),
    Case("deleteWebhook", lambda w: Call("deleteWebhook"), None, None, lambda r, w: _assert(r is True)),
    # where the message cannot go
    Case(
        "chat not found",
        lambda w: Call("sendMessage", {"chat_id": MISSING_CHAT, "text": "x"}),
        ours.ChatNotFound,
        ptb.BadRequest,
        _check_delivery_error,
    ),
    Case(
        "kicked from basic group",
        _send("group", "kick"),
        ours.Forbidden,
        ptb.Forbidden,
        _kind(ForbiddenKind.BOT_KICKED),
    ),
    Case(
        "kicked from supergroup",
        _send("supergroup", "kick"),
        ours.Forbidden,
        ptb.Forbidden,
        _kind(ForbiddenKind.BOT_KICKED),
    ),
    Case(
        "not a member of basic group",
        _send("group", "remove"),
        ours.Forbidden,
        ptb.Forbidden,
        _kind(ForbiddenKind.NOT_MEMBER),
    ),
    Case(
        "not a member of supergroup",
        _send("supergroup", "remove"),
        ours.Forbidden,
        ptb.Forbidden,
        _kind(ForbiddenKind.NOT_MEMBER),
    ),
    Case(
        "deleted group", _send("group", delete=True), ours.Forbidden, ptb.Forbidden, _kind(ForbiddenKind.CHAT_DELETED)
    ),
    Case("blocked by the user", _blocked, ours.Forbidden, ptb.Forbidden, _kind(ForbiddenKind.BLOCKED)),
    Case("group upgraded to supergroup", _migrated, ours.ChatMigrated, ptb.ChatMigrated, _check_migrated),
    # join requests
    Case("DM to a requester (user_chat_id)", _dm_requester, None, None, _check_dm),
    Case("answerCallbackQuery, unknown or already answered", _answer_unknown_query, ours.BadRequest, ptb.BadRequest),
    Case(
        "HIDE_REQUESTER_MISSING",
        _approve_without_request,
        ours.HideRequesterMissing,
        ptb.BadRequest,
        _check_code("HIDE_REQUESTER_MISSING"),
    ),
    Case(
        "USER_ALREADY_PARTICIPANT",
        _approve_member,
        ours.UserAlreadyParticipant,
        ptb.BadRequest,
        _check_code("USER_ALREADY_PARTICIPANT"),
    ),
    Case(
        "CHAT_ADMIN_REQUIRED",
        _approve_without_right,
        ours.ChatAdminRequired,
        ptb.BadRequest,
        _check_code("CHAT_ADMIN_REQUIRED"),
    ),
    # member management
    Case("ban the owner", _ban("supergroup", "owner"), ours.CannotRestrictAdmin, ptb.BadRequest, _check_delivery_error),
    Case("unban in a basic group", _unban("group"), ours.ChatTypeUnsupported, ptb.BadRequest),
    # content errors
    Case(
        "Markdown unclosed entity",
        _text("price *50% off", "Markdown"),
        ours.EntityParseError,
        ptb.BadRequest,
        _check_content,
    ),
    Case(
        "MarkdownV2 reserved character",
        _text("Hello world.", "MarkdownV2"),
        ours.EntityParseError,
        ptb.BadRequest,
        _check_content,
    ),
    Case("message is too long", _text("x" * 4097), ours.MessageTooLong, ptb.BadRequest, _check_content),
    Case(
        "caption is too long",
        _photo("https://example.com/cat.jpg", "y" * 1025),
        ours.MessageTooLong,
        ptb.BadRequest,
        _check_content,
    ),
    Case(
        "photo URL unreachable",
        _photo("https://nowhere.invalid/cat.jpg"),
        ours.ContentError,
        ptb.BadRequest,
        _check_content,
    ),
    # the bot or the API
    Case("unauthorized", lambda w: Call("getMe", token=UNKNOWN_TOKEN), ours.Unauthorized, ptb.InvalidToken),
    Case("unknown method", lambda w: Call("sendTelepathy", {"chat_id": 1}), ours.MethodNotFound, ptb.EndPointNotFound),
    Case("429 retry_after", _fault("flood", retry_after=7), ours.RetryAfter, ptb.RetryAfter, _check_retry_after(7)),
    Case(
        "500 from the Bot API",
        _fault("error", error_code=500, description="Internal Server Error"),
        ours.ServerError,
        ptb.NetworkError,
        _check_server_error(False),
    ),
    Case(
        "502 from a gateway",
        _fault("status", status=502),
        ours.ServerError,
        ptb.NetworkError,
        _check_server_error(True),
    ),
    Case(
        "hang past the read timeout",
        _fault("hang", seconds=1.5, apply=True),
        ours.TimedOut,
        ptb.TimedOut,
        _check_hang,
        read_timeout=0.5,
    ),
]


def _assert(condition: bool) -> None:
    assert condition
