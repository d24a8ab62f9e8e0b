"""Bot API methods for messages and members: the behaviour of api.telegram.org for the calls TGMS
(and its tests) make.

Each handler gets a `CallContext` and returns the `result` value, or raises `BotApiError`. Check
order follows the Bot API server: text and markup are parsed first, then the chat is looked up and
access checked (access.py), then rights, then lengths, then flood control. Handlers run under the
state lock. The webhook-side methods are in webhook_methods.py.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from telegram_sim import objects
from telegram_sim.access import chat_for, has_right, require_send_right, user_id_param
from telegram_sim.context import CallContext, method
from telegram_sim.errors import bad_request, too_many_requests
from telegram_sim.flood import StarBalanceTooLow
from telegram_sim.markdown import (
    EntityParseError,
    FormattedText,
    UnsupportedParseMode,
    auto_entities,
    parse,
    strip_text,
    utf16_len,
)
from telegram_sim.model import Chat, Member
from telegram_sim.params import Params, UploadedFile
from telegram_sim.state import SimState

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_RAW_TEXT_BYTES = 32768


def formatted_param(params: Params, text_name: str, mode_name: str, entities_name: str) -> FormattedText:
    text = params.string(text_name) or ""
    try:
        formatted = parse(text, params.string(mode_name))
    except UnsupportedParseMode:
        raise bad_request("unsupported parse_mode") from None
    except EntityParseError as exc:
        raise bad_request(f"can't parse entities: {exc}") from None
    explicit = params.json(entities_name)
    if not params.string(mode_name) and isinstance(explicit, list):
        formatted.entities = [e for e in explicit if isinstance(e, dict) and "type" in e]
    return formatted


def flood_check(ctx: CallContext, chat: Chat) -> None:
    """The last check before a send succeeds; `allow_paid_broadcast` may lift the bot's rate for Stars."""
    paid = ctx.params.flag("allow_paid_broadcast")
    try:
        retry_after = ctx.state.flood.acquire(ctx.bot.id, chat.id, chat.is_group_like, time.monotonic(), paid=paid)
    except StarBalanceTooLow:
        raise bad_request("BALANCE_TOO_LOW") from None
    if retry_after is not None:
        raise too_many_requests(retry_after)


def message_base(ctx: CallContext, chat: Chat) -> dict[str, Any]:
    return {
        "message_id": ctx.state.next_message_id(chat),
        "from": objects.user_json(ctx.bot.user),
        "chat": ctx.state.chat_json(chat),
        "date": ctx.state.now(),
    }


def reply_target(ctx: CallContext, chat: Chat) -> dict[str, Any] | None:
    params = ctx.params
    reply_id: int | None = None
    allow_missing = params.flag("allow_sending_without_reply")
    reply_parameters = params.json("reply_parameters")
    try:
        if isinstance(reply_parameters, dict) and reply_parameters.get("message_id") is not None:
            reply_id = int(reply_parameters["message_id"])
            allow_missing = allow_missing or bool(reply_parameters.get("allow_sending_without_reply"))
        elif params.integer("reply_to_message_id") is not None:
            reply_id = params.integer("reply_to_message_id")
    except (TypeError, ValueError):
        raise bad_request("message to be replied not found") from None
    if reply_id is None:
        return None
    stored = ctx.state.find_message(chat.id, reply_id)
    if stored is None:
        if allow_missing:
            return None
        raise bad_request("message to be replied not found")
    return stored.data


def reply_markup(ctx: CallContext) -> dict[str, Any] | None:
    """The reply_markup parameter, checked as the Bot API server parses an inline keyboard (its texts)."""
    if "reply_markup" not in ctx.params or ctx.params.raw("reply_markup") in ("", None):
        return None
    markup = ctx.params.json("reply_markup")
    if markup is None:
        raise bad_request("can't parse reply keyboard markup JSON object")
    if not isinstance(markup, dict):
        raise bad_request("object expected as reply markup")
    rows = markup.get("inline_keyboard")
    if isinstance(rows, list):
        for row in rows:
            if not isinstance(row, list):
                raise bad_request('Field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays')
            for button in row:
                problem = _inline_button_problem(button)
                if problem is not None:
                    raise bad_request(f"can't parse inline keyboard button: {problem}")
    return markup


def _inline_button_problem(button: Any) -> str | None:
    if not isinstance(button, dict):
        return "InlineKeyboardButton must be an Object"
    if not isinstance(button.get("text"), str):
        return 'Can\'t find field "text"' if "text" not in button else 'Field "text" must be of type String'
    kinds = ("url", "callback_data", "callback_game", "pay", "switch_inline_query", "login_url", "web_app",
             "switch_inline_query_current_chat", "switch_inline_query_chosen_chat", "copy_text")  # fmt: skip
    if not any(button.get(kind) not in (None, "") for kind in kinds):
        return "Text buttons are unallowed in the inline keyboard"
    return None


def finish_message(ctx: CallContext, chat: Chat, data: dict[str, Any], reply: dict[str, Any] | None) -> dict:
    if reply is not None:
        data["reply_to_message"] = reply
    markup = reply_markup(ctx)
    if markup is not None and "inline_keyboard" in markup:
        data["reply_markup"] = {"inline_keyboard": markup["inline_keyboard"]}
    ctx.state.store_message(chat, data, sent_by_bot=ctx.bot.id)
    return data


@method("getMe")
def get_me(ctx: CallContext) -> dict:
    return objects.me_json(ctx.bot)


@method("logOut")
def log_out(ctx: CallContext) -> bool:
    return True


@method("close")
def close(ctx: CallContext) -> bool:
    return True


@method("sendMessage")
def send_message(ctx: CallContext) -> dict:
    params = ctx.params
    raw = params.string("text") or ""
    if raw == "":
        raise bad_request("message text is empty")
    if len(raw.encode("utf-8")) > MAX_RAW_TEXT_BYTES:
        raise bad_request("text is too long")
    formatted = formatted_param(params, "text", "parse_mode", "entities")
    chat = chat_for(ctx, "write")
    require_send_right(ctx, chat, "can_send_messages", "text messages")
    reply = reply_target(ctx, chat)
    reply_markup(ctx)
    formatted = strip_text(formatted)
    if formatted.text == "":
        raise bad_request("message must be non-empty")
    if utf16_len(formatted.text) > MAX_TEXT:
        raise bad_request("message is too long")
    flood_check(ctx, chat)
    data = message_base(ctx, chat)
    data["text"] = formatted.text
    entities = auto_entities(formatted.text, formatted.entities)
    if entities:
        data["entities"] = entities
    return finish_message(ctx, chat, data, reply)


@method("sendPhoto")
def send_photo(ctx: CallContext) -> dict:
    params = ctx.params
    photo = params.raw("photo")
    if photo is None or photo == "":
        raise bad_request("there is no photo in the request")
    caption = formatted_param(params, "caption", "parse_mode", "caption_entities")
    chat = chat_for(ctx, "write")
    require_send_right(ctx, chat, "can_send_photos", "photos")
    reply = reply_target(ctx, chat)
    reply_markup(ctx)
    sizes = photo_sizes(ctx, photo)
    caption = strip_text(caption)
    if utf16_len(caption.text) > MAX_CAPTION:
        raise bad_request("message caption is too long")
    flood_check(ctx, chat)
    data = message_base(ctx, chat)
    data["photo"] = sizes
    if caption.text:
        data["caption"] = caption.text
        entities = auto_entities(caption.text, caption.entities)
        if entities:
            data["caption_entities"] = entities
    if params.flag("has_spoiler"):
        data["has_media_spoiler"] = True
    return finish_message(ctx, chat, data, reply)


_PHOTO_SIZES = ((90, 60), (320, 213), (800, 533), (1280, 853))


def photo_sizes(ctx: CallContext, photo: Any) -> list[dict[str, Any]]:
    """PhotoSize list for an upload, an http(s) URL or a file_id this simulator issued.

    URLs are never fetched: hosts under `.invalid` fail like an unreachable URL, and .html/.txt
    paths fail like a URL that is not an image.
    """
    state = ctx.state
    if isinstance(photo, str):
        known = state_known_photo(state, photo)
        if known is not None:
            return known
        parts = urlsplit(photo.strip())
        if parts.scheme.lower() in ("http", "https"):
            host = (parts.hostname or "").lower()
            if not host:
                raise bad_request("wrong HTTP URL specified")
            if host.endswith(".invalid"):
                raise bad_request("failed to get HTTP URL content")
            if parts.path.lower().endswith((".html", ".htm", ".txt")):
                raise bad_request("wrong type of the web page content")
        elif parts.scheme:
            raise bad_request("wrong HTTP URL specified")
        else:
            raise bad_request("wrong file identifier/HTTP URL specified")
    elif not isinstance(photo, UploadedFile):
        raise bad_request("wrong file identifier/HTTP URL specified")
    sizes = []
    for width, height in _PHOTO_SIZES:
        file_id, unique = state.new_file_ids()
        sizes.append({"file_id": file_id, "file_unique_id": unique, "file_size": width * height // 12,
                      "width": width, "height": height})  # fmt: skip
    remember_photo(state, sizes)
    return sizes


def state_known_photo(state: SimState, file_id: str) -> list[dict[str, Any]] | None:
    return state.photos.get(file_id)


def remember_photo(state: SimState, sizes: list[dict[str, Any]]) -> None:
    for size in sizes:
        state.photos[size["file_id"]] = sizes


@method("deleteMessage")
def delete_message(ctx: CallContext) -> bool:
    chat = chat_for(ctx, "write")
    try:
        message_id = ctx.params.integer("message_id")
    except ValueError:
        message_id = None
    if message_id is None:
        raise bad_request("message identifier is not specified")
    messages = ctx.state.messages.get(chat.id, [])
    for stored in messages:
        if stored.message_id == message_id:
            if stored.sent_by_bot != ctx.bot.id and not has_right(ctx, chat, "can_delete_messages"):
                raise bad_request("message can't be deleted")
            ctx.state.remove_message(stored)
            return True
    raise bad_request("message to delete not found")


@method("approveChatJoinRequest")
def approve_chat_join_request(ctx: CallContext) -> bool:
    return _answer_join_request(ctx, approve=True)


@method("declineChatJoinRequest")
def decline_chat_join_request(ctx: CallContext) -> bool:
    return _answer_join_request(ctx, approve=False)


def _answer_join_request(ctx: CallContext, approve: bool) -> bool:
    user_id = user_id_param(ctx.params)
    chat = chat_for(ctx, "write")
    if user_id not in ctx.state.users:
        raise bad_request("user not found")
    if chat.type == "private":
        raise bad_request("chat member status can't be changed in private chats")
    if not has_right(ctx, chat, "can_invite_users"):
        raise bad_request("CHAT_ADMIN_REQUIRED")
    if ctx.state.member_of(chat, user_id).present:
        raise bad_request("USER_ALREADY_PARTICIPANT")
    request = chat.join_requests.pop(user_id, None)
    if request is None:
        raise bad_request("HIDE_REQUESTER_MISSING")
    if approve:
        ctx.state.change_member(
            chat,
            user_id,
            Member(user_id, "member"),
            actor_id=user_id,
            via_join_request=True,
            invite_link=request.invite_link,
        )
    return True


@method("answerCallbackQuery")
def answer_callback_query(ctx: CallContext) -> bool:
    query_id = ctx.params.string("callback_query_id") or ""
    query = ctx.state.callback_queries.get(query_id.strip())
    text = ctx.params.string("text") or ""
    if len(text) > 200:
        raise bad_request("MESSAGE_TOO_LONG")
    # Unknown, another bot's, or answered already: Telegram no longer accepts an answer.
    if query is None or query.bot_id != ctx.bot.id or query.answered:
        raise bad_request("query is too old and response timeout expired or query ID is invalid")
    query.answered = True
    query.answer = {"text": text, "show_alert": ctx.params.flag("show_alert"), "url": ctx.params.string("url")}
    return True


@method("getChat")
def get_chat(ctx: CallContext) -> dict:
    chat = chat_for(ctx, "read")
    private_user = ctx.state.users.get(chat.private_user_id) if chat.private_user_id else None
    return objects.chat_full_info_json(chat, private_user)


@method("getChatMemberCount", "getChatMembersCount")
def get_chat_member_count(ctx: CallContext) -> int:
    chat = chat_for(ctx, "read_members")
    if chat.type == "private":
        return 2
    return chat.member_count


@method("getChatMember")
def get_chat_member(ctx: CallContext) -> dict:
    user_id = user_id_param(ctx.params)
    chat = chat_for(ctx, "read_members")
    user = ctx.state.users.get(user_id)
    if user is None:
        raise bad_request("user not found")
    return objects.member_json(chat, ctx.state.member_of(chat, user_id), user)


@method("getChatAdministrators")
def get_chat_administrators(ctx: CallContext) -> list:
    chat = chat_for(ctx, "read_members")
    if chat.type == "private":
        raise bad_request("there are no administrators in the private chat")
    admins = [m for m in chat.members.values() if m.status in ("creator", "administrator")]
    return [objects.member_json(chat, m, ctx.state.users[m.user_id]) for m in admins]


@method("banChatMember", "kickChatMember")
def ban_chat_member(ctx: CallContext) -> bool:
    user_id = user_id_param(ctx.params)
    chat = chat_for(ctx, "write")
    if chat.type == "private":
        raise bad_request("chat member status can't be changed in private chats")
    target = _restrict_target(ctx, chat, user_id)
    if chat.type == "group":
        if target.present:
            ctx.state.change_member(chat, user_id, Member(user_id, "left"), actor_id=ctx.bot.id)
        return True
    until = ctx.params.integer("until_date") or 0
    now = ctx.state.now()
    if until and (until - now < 30 or until - now > 366 * 86400):
        until = 0
    ctx.state.change_member(chat, user_id, Member(user_id, "kicked", until_date=until), actor_id=ctx.bot.id)
    return True


@method("unbanChatMember")
def unban_chat_member(ctx: CallContext) -> bool:
    user_id = user_id_param(ctx.params)
    chat = chat_for(ctx, "write")
    if chat.type != "supergroup" and chat.type != "channel":
        raise bad_request("method is available for supergroup and channel chats only")
    target = _restrict_target(ctx, chat, user_id)
    if ctx.params.flag("only_if_banned") and target.status != "kicked":
        return True
    if target.status == "left":
        return True
    ctx.state.change_member(chat, user_id, Member(user_id, "left"), actor_id=ctx.bot.id)
    return True


def _restrict_target(ctx: CallContext, chat: Chat, user_id: int) -> Member:
    if user_id not in ctx.state.users:
        raise bad_request("user not found")
    if not has_right(ctx, chat, "can_restrict_members"):
        raise bad_request("not enough rights to restrict/unrestrict chat member")
    target = ctx.state.member_of(chat, user_id)
    if target.status == "creator":
        raise bad_request("can't remove chat owner")
    if target.status == "administrator":
        raise bad_request("user is an administrator of the chat")
    return target


@method("leaveChat")
def leave_chat(ctx: CallContext) -> bool:
    chat = chat_for(ctx, "write")
    if chat.type == "private":
        raise bad_request("chat member status can't be changed in private chats")
    ctx.state.change_member(chat, ctx.bot.id, Member(ctx.bot.id, "left"), actor_id=ctx.bot.id)
    return True


@method("setMyCommands")
def set_my_commands(ctx: CallContext) -> bool:
    commands = ctx.params.json("commands")
    if not isinstance(commands, list):
        raise bad_request("can't parse commands JSON object")
    ctx.state.commands[ctx.bot.id] = commands
    return True


@method("getMyCommands")
def get_my_commands(ctx: CallContext) -> list:
    return list(ctx.state.commands.get(ctx.bot.id, []))


@method("deleteMyCommands")
def delete_my_commands(ctx: CallContext) -> bool:
    ctx.state.commands.pop(ctx.bot.id, None)
    return True
