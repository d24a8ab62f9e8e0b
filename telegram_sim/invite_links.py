"""Bot API methods for additional invite links: createChatInviteLink, editChatInviteLink,
revokeChatInviteLink.

Check order as the Bot API server and TDLib make it: the chat and the bot's access first (as for
sendMessage), a private chat, then the settings (a link that creates join requests cannot have a
member limit), then the `can_invite_users` right (a bot never manages links through default
permissions), then the expiry date and the member limit. A link is `https://t.me/+` and a random
16-character hash; only its creator sees it whole (see objects.invite_link_json). A revoked link
stays listed with `is_revoked`; revoking it again answers it again.
"""

from __future__ import annotations

from telegram_sim.access import chat_for, has_right
from telegram_sim.context import CallContext, method
from telegram_sim.errors import bad_request
from telegram_sim.model import Chat, InviteLink

MAX_NAME = 32
MAX_MEMBER_LIMIT = 99999


def _settings(ctx: CallContext, chat: Chat) -> tuple[str | None, int, int, bool]:
    params = ctx.params
    if chat.type == "private":
        raise bad_request("can't invite members to a private chat")
    name = params.string("name")
    try:
        expire_date = params.integer("expire_date") or 0
        member_limit = params.integer("member_limit") or 0
    except ValueError:
        expire_date, member_limit = 0, 0
    creates_join_request = params.flag("creates_join_request")
    if creates_join_request and member_limit > 0:
        raise bad_request("member limit can't be specified for links requiring administrator approval")
    if not has_right(ctx, chat, "can_invite_users"):
        raise bad_request("not enough rights to manage chat invite link")
    if expire_date > 0 and expire_date <= ctx.state.now():
        raise bad_request("EXPIRE_DATE_INVALID")
    if member_limit > MAX_MEMBER_LIMIT:
        raise bad_request("USAGE_LIMIT_INVALID")
    return (name.strip()[:MAX_NAME] if name else None), max(expire_date, 0), max(member_limit, 0), creates_join_request


def _existing(ctx: CallContext, chat: Chat) -> InviteLink:
    url = (ctx.params.string("invite_link") or "").strip()
    if not url:
        raise bad_request("invite link must be non-empty")
    link = chat.invite_links.get(url)
    if link is None:
        raise bad_request("INVITE_HASH_EXPIRED")
    return link


@method("createChatInviteLink")
def create_chat_invite_link(ctx: CallContext) -> dict:
    chat = chat_for(ctx, "write")
    name, expire_date, member_limit, creates_join_request = _settings(ctx, chat)
    link = ctx.state.create_invite_link(
        chat,
        ctx.bot.id,
        name=name,
        expire_date=expire_date,
        member_limit=member_limit,
        creates_join_request=creates_join_request,
    )
    return ctx.state.invite_link_json(chat, link, ctx.bot.id)


@method("editChatInviteLink")
def edit_chat_invite_link(ctx: CallContext) -> dict:
    chat = chat_for(ctx, "write")
    name, expire_date, member_limit, creates_join_request = _settings(ctx, chat)
    link = _existing(ctx, chat)
    if link.is_revoked:
        raise bad_request("INVITE_HASH_EXPIRED")
    link.name, link.expire_date, link.member_limit = name, expire_date, member_limit
    link.creates_join_request = creates_join_request
    return ctx.state.invite_link_json(chat, link, ctx.bot.id)


@method("revokeChatInviteLink")
def revoke_chat_invite_link(ctx: CallContext) -> dict:
    chat = chat_for(ctx, "write")
    if chat.type == "private":
        raise bad_request("can't invite members to a private chat")
    if not has_right(ctx, chat, "can_invite_users"):
        raise bad_request("not enough rights to manage chat invite link")
    link = _existing(ctx, chat)
    link.is_revoked = True
    return ctx.state.invite_link_json(chat, link, ctx.bot.id)
