"""Bot API methods that change messages already sent: editMessageText, editMessageCaption,
deleteMessages, pinChatMessage, unpinChatMessage.

Behaviour follows the Bot API documentation and the errors the Bot API server answers:

- an edit must change something ("message is not modified: ..."), reach a message that exists and was
  not deleted ("message to edit not found"), that this bot sent ("message can't be edited"), and of the
  right kind (editMessageText on a photo: "there is no text in the message to edit"; editMessageCaption
  on a text message: "there is no caption in the message to edit"). Every edit keeps the previous text
  in the message's history (the control API shows it) and sets `edit_date`;
- deleteMessages takes 1-100 ids, silently skips the ones that do not exist (or were deleted already),
  and refuses, before deleting anything, when a listed message is older than 48 hours ("message can't
  be deleted for everyone") or was sent by someone else while the bot may not delete other people's
  messages ("message can't be deleted");
- pinning needs the right to pin: the owner, an administrator with `can_pin_messages`, or a member
  when the chat lets members pin ("not enough rights to manage pinned messages in the chat"). As in
  the Bot API server, the message is looked up first ("message to pin not found", "message to unpin
  not found" — also for a missing `message_id`); unpinning a message that is not pinned is no error;
  unpinning without `message_id` when nothing is pinned is ("message to unpin not found");
- deleteMessages checks `message_ids` as the Bot API server does: "message identifiers are not
  specified", "expected an Array of message identifiers", "too many message identifiers specified",
  "message identifier must be a Number", "invalid message identifier specified";
- flood control: Telegram limits every message-changing call like a send (the bot's ~30/s, a chat's
  ~1/s with short bursts, a group's 20 per minute), so edits, deletions and pins take the same tokens
  from the same buckets as sendMessage (`methods.flood_check`), after their own checks.

Message age is the message's `date` against the simulator's clock, so a test can age a message through
the control API (`POST /_sim/messages/age`) instead of waiting two days.
"""

from __future__ import annotations

from typing import Any

from telegram_sim.access import bot_member, chat_for, has_right
from telegram_sim.context import CallContext, method
from telegram_sim.errors import bad_request
from telegram_sim.markdown import auto_entities, strip_text, utf16_len
from telegram_sim.methods import MAX_CAPTION, MAX_RAW_TEXT_BYTES, MAX_TEXT, flood_check, formatted_param, reply_markup
from telegram_sim.model import Chat, StoredMessage

DELETE_WINDOW_SECONDS = 48 * 3600
MAX_DELETE_IDS = 100
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the same as a current "
    "content and reply markup of the message"
)


def _message_id(ctx: CallContext) -> int | None:
    try:
        return ctx.params.integer("message_id")
    except ValueError:
        return None


def _edit_target(ctx: CallContext) -> tuple[Chat, StoredMessage]:
    if ctx.params.raw("inline_message_id"):
        raise bad_request("message to edit not found")
    chat = chat_for(ctx, "write")
    message_id = _message_id(ctx)
    stored = ctx.state.find_message(chat.id, message_id) if message_id is not None and message_id > 0 else None
    if stored is None:
        raise bad_request("message to edit not found")
    if stored.sent_by_bot != ctx.bot.id:
        raise bad_request("message can't be edited")
    return chat, stored


def _apply_edit(ctx: CallContext, stored: StoredMessage, field: str, text: str, entities: list[Any]) -> dict:
    entities_field = "entities" if field == "text" else "caption_entities"
    markup = reply_markup(ctx)
    new_markup = {"inline_keyboard": markup["inline_keyboard"]} if markup and "inline_keyboard" in markup else None
    data = stored.data
    if (
        data.get(field, "") == text
        and data.get(entities_field, []) == entities
        and data.get("reply_markup") == new_markup
    ):
        raise bad_request(NOT_MODIFIED)
    flood_check(ctx, ctx.state.chats[stored.chat_id])
    before = {field: data.get(field), "edit_date": data.get("edit_date") or data.get("date")}
    if "reply_markup" in data:
        before["reply_markup"] = data["reply_markup"]
    stored.history.append(before)
    updated = {**data, field: text, "edit_date": ctx.state.now()}
    updated.pop(entities_field, None)
    if entities:
        updated[entities_field] = entities
    updated.pop("reply_markup", None)
    if new_markup is not None:
        updated["reply_markup"] = new_markup
    stored.data = updated
    return updated


@method("editMessageText")
def edit_message_text(ctx: CallContext) -> dict:
    raw = ctx.params.string("text") or ""
    if raw == "":
        raise bad_request("message text is empty")
    if len(raw.encode("utf-8")) > MAX_RAW_TEXT_BYTES:
        raise bad_request("text is too long")
    formatted = formatted_param(ctx.params, "text", "parse_mode", "entities")
    _chat, stored = _edit_target(ctx)
    if "text" not in stored.data:
        raise bad_request("there is no text in the message to edit")
    formatted = strip_text(formatted)
    if formatted.text == "":
        raise bad_request("message must be non-empty")
    if utf16_len(formatted.text) > MAX_TEXT:
        raise bad_request("message is too long")
    return _apply_edit(ctx, stored, "text", formatted.text, auto_entities(formatted.text, formatted.entities))


@method("editMessageCaption")
def edit_message_caption(ctx: CallContext) -> dict:
    caption = formatted_param(ctx.params, "caption", "parse_mode", "caption_entities")
    _chat, stored = _edit_target(ctx)
    if "text" in stored.data:
        raise bad_request("there is no caption in the message to edit")
    caption = strip_text(caption)
    if utf16_len(caption.text) > MAX_CAPTION:
        raise bad_request("message caption is too long")
    return _apply_edit(ctx, stored, "caption", caption.text, auto_entities(caption.text, caption.entities))


@method("deleteMessages")
def delete_messages(ctx: CallContext) -> bool:
    chat = chat_for(ctx, "write")
    if ctx.params.raw("message_ids") in (None, ""):
        raise bad_request("message identifiers are not specified")
    ids = ctx.params.json("message_ids")
    if not isinstance(ids, list):
        raise bad_request("expected an Array of message identifiers")
    if len(ids) > MAX_DELETE_IDS:
        raise bad_request("too many message identifiers specified")
    wanted: set[int] = set()
    for raw in ids:
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise bad_request("message identifier must be a Number")
        try:
            number = int(raw)
        except ValueError:
            raise bad_request("can't parse message identifier as a Number") from None
        if not -(2**31) <= number < 2**31:
            raise bad_request("can't parse message identifier as a Number")
        if number <= 0:
            raise bad_request("invalid message identifier specified")
        wanted.add(number)
    if not wanted:
        raise bad_request("message identifiers are not specified")
    found = [m for m in ctx.state.messages.get(chat.id, []) if m.message_id in wanted]
    now = ctx.state.now()
    for stored in found:
        if now - int(stored.data.get("date", now)) >= DELETE_WINDOW_SECONDS:
            raise bad_request("message can't be deleted for everyone")
        if stored.sent_by_bot != ctx.bot.id and not has_right(ctx, chat, "can_delete_messages"):
            raise bad_request("message can't be deleted")
    if found:
        flood_check(ctx, chat)
    for stored in found:
        ctx.state.remove_message(stored)
    return True


def _may_pin(ctx: CallContext, chat: Chat) -> bool:
    if chat.type == "private":
        return True
    member = bot_member(ctx, chat)
    if member.status in ("creator", "administrator"):
        return has_right(ctx, chat, "can_pin_messages")
    if member.status == "restricted":
        return bool(member.rights.get("can_pin_messages"))
    return bool(chat.permissions.get("can_pin_messages"))


@method("pinChatMessage")
def pin_chat_message(ctx: CallContext) -> bool:
    chat = chat_for(ctx, "write")
    message_id = _message_id(ctx)
    stored = ctx.state.find_message(chat.id, message_id) if message_id is not None and message_id > 0 else None
    if stored is None:
        raise bad_request("message to pin not found")
    if not _may_pin(ctx, chat):
        raise bad_request("not enough rights to manage pinned messages in the chat")
    flood_check(ctx, chat)
    stored.pinned = True
    return True


@method("unpinChatMessage")
def unpin_chat_message(ctx: CallContext) -> bool:
    chat = chat_for(ctx, "write")
    message_id = _message_id(ctx)
    if message_id is not None and message_id > 0:
        target = ctx.state.find_message(chat.id, message_id)
        if target is None:
            raise bad_request("message to unpin not found")
    else:  # the most recently pinned one (getChatPinnedMessage)
        pinned = [m for m in ctx.state.messages.get(chat.id, []) if m.pinned]
        if not pinned:
            raise bad_request("message to unpin not found")
        target = pinned[-1]
    if not _may_pin(ctx, chat):
        raise bad_request("not enough rights to manage pinned messages in the chat")
    flood_check(ctx, chat)
    target.pinned = False
    return True
