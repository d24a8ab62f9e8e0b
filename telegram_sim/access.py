"""Who may do what where: chat lookup and access checks as the Bot API server makes them.

`check_access` follows tdlib/telegram-bot-api `Client::check_chat_access`: an upgraded or deleted
basic group refuses writes (and member reads), a kicked bot is refused everything, a bot that left
is refused reads and writes; chats the bot never belonged to are "chat not found".
"""

from __future__ import annotations

from telegram_sim import objects
from telegram_sim.context import CallContext
from telegram_sim.errors import bad_request, chat_migrated, forbidden
from telegram_sim.model import USER_CHAT_WINDOW_SECONDS, Bot, Chat, Member, User
from telegram_sim.params import Params
from telegram_sim.state import SimState


def user_id_param(params: Params, name: str = "user_id") -> int:
    try:
        value = params.integer(name)
    except ValueError:
        value = None
    if value is None or value <= 0:
        raise bad_request(f"invalid {name} specified")
    return value


def chat_ref(params: Params) -> int | str:
    raw = params.string("chat_id")
    if raw is None or raw.strip() == "":
        raise bad_request("chat_id is empty")
    raw = raw.strip()
    if raw.startswith("@"):
        return raw
    try:
        return int(raw)
    except ValueError:
        raise bad_request("chat not found") from None


def find_chat(ctx: CallContext, ref: int | str) -> Chat:
    """The chat as this bot knows it; Telegram says "chat not found" for chats the bot never saw."""
    state, bot = ctx.state, ctx.bot
    if isinstance(ref, str):
        wanted = ref.lstrip("@").lower()
        for chat in state.chats.values():
            if chat.username and chat.username.lower() == wanted and bot.id in chat.members:
                return chat
        raise bad_request("chat not found")
    if ref > 0:
        user = state.users.get(ref)
        if user is None:
            raise bad_request("chat not found")
        if not _knows_private(state, bot, user):
            if (bot.id, user.id) in state.requesters_seen:
                # The bot knows the user (their join request), but the request's 5-minute window is
                # over or the request was handled: Telegram refuses to open the conversation.
                raise forbidden("bot can't initiate conversation with a user")
            raise bad_request("chat not found")
        return state.private_chat(bot, user)
    found = state.chats.get(ref)
    if found is None or bot.id not in found.members:
        raise bad_request("chat not found")
    if found.type == "supergroup" and found.deleted:
        raise bad_request("chat not found")
    return found


def _knows_private(state: SimState, bot: Bot, user: User) -> bool:
    if bot.id in user.started_bots or bot.id == user.id:
        return True
    # A pending join request lets the bot write to the requester (user_chat_id) for 5 minutes.
    now = state.now()
    return any(
        (request := chat.join_requests.get(user.id)) is not None
        and bot.id in chat.members
        and now - request.date <= USER_CHAT_WINDOW_SECONDS
        for chat in state.chats.values()
    )


def check_access(ctx: CallContext, chat: Chat, access: str) -> None:
    """access: read | read_members | edit | write, as in the Bot API server."""
    bot = ctx.bot
    if chat.type == "private":
        if access == "write":
            user = ctx.state.users[chat.id]
            if user.is_bot:
                raise forbidden("bot can't send messages to bots")
            if user.deactivated:
                raise forbidden("user is deactivated")
            if bot.id in user.blocked_bots:
                raise forbidden("bot was blocked by the user")
        return
    member = chat.members.get(bot.id) or objects.left_member(bot.id)
    if chat.type == "group":
        need_write = access == "write" or (access == "read_members" and not chat.active)
        if not chat.active and need_write:
            if chat.upgraded_to is not None:
                raise chat_migrated(chat.upgraded_to)
            raise forbidden("the group chat was deleted")
        if member.present:
            return
        if member.status == "kicked":
            raise forbidden("bot was kicked from the group chat")
        if access != "read_members":
            raise forbidden("bot is not a member of the group chat")
        return
    kind = "supergroup" if chat.type == "supergroup" else "channel"
    need_more = access in ("edit", "write") if chat.username else access != "read_members"
    if member.status == "kicked" and (kind == "supergroup" or need_more):
        raise forbidden(f"bot was kicked from the {kind} chat")
    if not member.present and need_more:
        raise forbidden(f"bot is not a member of the {kind} chat")


def chat_for(ctx: CallContext, access: str) -> Chat:
    chat = find_chat(ctx, chat_ref(ctx.params))
    check_access(ctx, chat, access)
    return chat


def bot_member(ctx: CallContext, chat: Chat) -> Member:
    return chat.members.get(ctx.bot.id) or objects.left_member(ctx.bot.id)


def has_right(ctx: CallContext, chat: Chat, right: str) -> bool:
    member = bot_member(ctx, chat)
    return member.status == "creator" or (member.status == "administrator" and bool(member.rights.get(right)))


def require_send_right(ctx: CallContext, chat: Chat, permission: str, what: str) -> None:
    if chat.type == "private":
        return
    member = bot_member(ctx, chat)
    if member.status in ("creator", "administrator"):
        if chat.type == "channel" and member.status == "administrator" and not member.rights.get("can_post_messages"):
            raise bad_request("need administrator rights in the channel chat")
        return
    allowed = (
        member.rights.get(permission, False)
        if member.status == "restricted"
        else chat.permissions.get(permission, False)
    )
    if not allowed:
        raise bad_request(f"not enough rights to send {what} to the chat")
