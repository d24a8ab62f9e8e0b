"""Bot API JSON shapes (User, Chat, ChatFullInfo, ChatMember, WebhookInfo) built from the model.

Field presence follows the Bot API server: optional fields are omitted when empty or false, basic
groups carry `all_members_are_administrators`, rights flags that only channels have are left out of
group members, and administrators keep the legacy `can_manage_voice_chats`.
"""

from __future__ import annotations

from typing import Any

from telegram_sim.model import (
    ADMIN_RIGHTS,
    CHANNEL_ONLY_RIGHTS,
    PERMISSIONS,
    Bot,
    Chat,
    InviteLink,
    Member,
    User,
)

JSON = dict[str, Any]

# Telegram's "Group" service account, the sender of anonymous-admin and migrate_from messages.
GROUP_ANONYMOUS_BOT = User(id=1087968824, first_name="Group", username="GroupAnonymousBot", is_bot=True)


def user_json(user: User) -> JSON:
    data: JSON = {"id": user.id, "is_bot": user.is_bot, "first_name": user.first_name}
    if user.last_name:
        data["last_name"] = user.last_name
    if user.username:
        data["username"] = user.username
    if user.language_code:
        data["language_code"] = user.language_code
    return data


def me_json(bot: Bot) -> JSON:
    """getMe: the bot's User with the bot-only capability flags."""
    data = user_json(bot.user)
    data.update(
        can_join_groups=bot.can_join_groups,
        can_read_all_group_messages=bot.can_read_all_group_messages,
        supports_inline_queries=bot.supports_inline_queries,
        can_connect_to_business=False,
        has_main_web_app=False,
    )
    return data


def everyone_is_administrator(chat: Chat) -> bool:
    flags = [name for name in PERMISSIONS if name != "can_manage_topics"]
    return all(chat.permissions.get(name, False) for name in flags)


def chat_json(chat: Chat, private_user: User | None = None) -> JSON:
    """The short Chat object used inside messages and updates."""
    data: JSON = {"id": chat.id}
    if chat.type == "private":
        assert private_user is not None
        data["first_name"] = private_user.first_name
        if private_user.last_name:
            data["last_name"] = private_user.last_name
        if private_user.username:
            data["username"] = private_user.username
        data["type"] = "private"
        return data
    data["title"] = chat.title or ""
    if chat.type == "group":
        data["type"] = "group"
        data["all_members_are_administrators"] = everyone_is_administrator(chat)
        return data
    if chat.username:
        data["username"] = chat.username
    data["type"] = chat.type
    return data


def chat_full_info_json(chat: Chat, private_user: User | None = None) -> JSON:
    """getChat: ChatFullInfo (the short Chat plus what a full fetch adds)."""
    data = chat_json(chat, private_user)
    if chat.type in ("group", "supergroup", "channel"):
        if chat.username:
            data["active_usernames"] = [chat.username]
        if chat.description:
            data["description"] = chat.description
        if chat.type != "channel":
            data["permissions"] = permissions_json(chat.permissions)
    data["max_reaction_count"] = 11
    data["accent_color_id"] = abs(chat.id) % 7
    data["accepted_gift_types"] = {
        "unlimited_gifts": False,
        "limited_gifts": False,
        "unique_gifts": False,
        "premium_subscription": False,
        "gifts_from_channels": False,
    }
    return data


def permissions_json(flags: dict[str, bool]) -> JSON:
    return {name: bool(flags.get(name, False)) for name in PERMISSIONS}


def member_json(chat: Chat, member: Member, user: User) -> JSON:
    """ChatMember in the variant its status selects (Owner/Administrator/Member/Restricted/Left/Banned)."""
    data: JSON = {"user": user_json(user), "status": member.status}
    status = member.status
    if status == "creator":
        data["is_anonymous"] = member.is_anonymous
        if member.custom_title:
            data["custom_title"] = member.custom_title
    elif status == "administrator":
        data["can_be_edited"] = False
        data["is_anonymous"] = member.is_anonymous
        for name in ADMIN_RIGHTS:
            if name in CHANNEL_ONLY_RIGHTS and chat.type != "channel":
                continue
            data[name] = bool(member.rights.get(name, False))
        data["can_manage_voice_chats"] = bool(member.rights.get("can_manage_video_chats", False))
        if member.custom_title:
            data["custom_title"] = member.custom_title
    elif status == "restricted":
        data["is_member"] = member.is_member
        for name in PERMISSIONS:
            data[name] = bool(member.rights.get(name, False))
        data["until_date"] = member.until_date
    elif status == "kicked" or (status == "member" and member.until_date):
        data["until_date"] = member.until_date
    return data


def left_member(user_id: int) -> Member:
    return Member(user_id=user_id, status="left")


def webhook_info_json(bot: Bot) -> JSON:
    hook = bot.webhook
    data: JSON = {
        "url": hook.url,
        "has_custom_certificate": hook.has_custom_certificate,
        "pending_update_count": len(bot.pending),
    }
    if not hook.url:
        return data
    if hook.ip_address:
        data["ip_address"] = hook.ip_address
    if hook.last_error_date:
        data["last_error_date"] = hook.last_error_date
        data["last_error_message"] = hook.last_error_message or ""
    data["max_connections"] = hook.max_connections
    if bot.allowed_updates is not None:
        data["allowed_updates"] = list(bot.allowed_updates)
    return data


def invite_link_json(link: InviteLink, creator: User, *, viewer_id: int, pending: int = 0) -> JSON:
    """ChatInviteLink as `viewer_id` sees it: the Bot API shows other administrators' links with the
    second half of their hash replaced by "..." (only the creator sees the whole link)."""
    url = link.invite_link
    if viewer_id != link.creator_id:
        url = truncated_link(url)
    data: JSON = {
        "invite_link": url,
        "creator": user_json(creator),
        "creates_join_request": link.creates_join_request,
        "is_primary": False,
        "is_revoked": link.is_revoked,
    }
    if link.name:
        data["name"] = link.name
    if link.expire_date:
        data["expire_date"] = link.expire_date
    if link.member_limit:
        data["member_limit"] = link.member_limit
    if pending and link.creates_join_request:
        data["pending_join_request_count"] = pending
    return data


def truncated_link(url: str) -> str:
    prefix, _, code = url.rpartition("+")
    if not prefix or not code:
        return url
    return f"{prefix}+{code[: len(code) // 2]}..."
