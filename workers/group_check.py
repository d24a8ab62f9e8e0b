"""Whether the group-management bot can manage a chat, asked of Telegram; and the job that registers a
group after that check (`tgms_register_group`, how the control center adds a group by id, and with
`"reactivate": true` how it reactivates one).

One check serves `tgms groups add`, `tgms groups set --active yes` and the control center, so the
three refuse the same chats for the same reasons: getChat (the chat exists for this bot, and is a group
or supergroup), then getChatMember for the bot itself (an administrator that may invite users, which
approving join requests needs). Each refusal says why and what to do about it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from tgms_tui.backend import groups
from tgms_tui.backend.queue import Job

from .bots import bots_for
from .runner import JobContext, PermanentFailure, Snooze
from .telegram_api import ChatMigrated, ChatNotFound, Forbidden, RetryAfter, TelegramClient
from .telegram_errors import ForbiddenKind

log = logging.getLogger(__name__)

JOB_TYPE = groups.REGISTER_JOB
MANAGEABLE_TYPES = ("group", "supergroup")
PROMOTE = "promote the bot to administrator with 'Invite Users via Link' (it approves join requests)"


@dataclass(frozen=True)
class ChatCheck:
    """What Telegram says about a chat and the bot in it; `problem` is None when the bot can manage it."""

    chat_id: int
    title: str
    chat_type: str
    bot_status: str | None
    can_invite: bool
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def _refused(chat_id: int, problem: str, chat: dict[str, Any] | None = None, status: str | None = None) -> ChatCheck:
    chat = chat or {}
    return ChatCheck(chat_id, str(chat.get("title") or ""), str(chat.get("type") or ""), status, False, problem)


async def check_chat(client: TelegramClient, chat_id: int) -> ChatCheck:
    """Ask Telegram whether `client`'s bot can manage `chat_id`.

    A chat the bot cannot see, a private chat or channel, and a bot that is not an administrator with
    the invite right come back as a ChatCheck with its `problem`; a failure to ask (network, 429, a
    rejected token) raises the client's TelegramError.
    """
    try:
        chat: dict[str, Any] = dict(await client.get_chat(chat_id))
    except ChatNotFound:
        return _refused(chat_id, "Telegram knows no such chat for this bot: the bot is not in it, or the id is wrong")
    except ChatMigrated as exc:
        return _refused(chat_id, f"the group was upgraded to a supergroup with id {exc.new_chat_id}: add that id")
    except Forbidden as exc:
        if exc.kind is ForbiddenKind.CHAT_DELETED:
            return _refused(chat_id, "the chat was deleted")
        return _refused(chat_id, f"the bot is not in the chat ({exc.description}): add it as administrator first")
    chat_type = str(chat.get("type") or "")
    if chat_type == "private":
        return _refused(chat_id, "this is a private chat with a user, not a group", chat)
    if chat_type not in MANAGEABLE_TYPES:
        return _refused(chat_id, f"this is a {chat_type or 'chat of unknown type'}: TGMS manages groups", chat)
    bot_id = client.bot_id
    if bot_id is None:
        bot_id = int((await client.get_me())["id"])
    member: dict[str, Any] = dict(await client.get_chat_member(chat_id, bot_id))
    status = str(member.get("status") or "")
    can_invite = status == "creator" or (status == "administrator" and bool(member.get("can_invite_users")))
    problem: str | None = None
    if status in ("left", "kicked"):
        problem = f"the bot is not in the group (status {status}): add it back and {PROMOTE}"
    elif status not in ("administrator", "creator"):
        problem = f"the bot is not an administrator of the group (status {status}): {PROMOTE}"
    elif not can_invite:
        problem = (
            "the bot is an administrator without 'Invite Users via Link', so it cannot approve join "
            "requests: give it that right"
        )
    return ChatCheck(chat_id, str(chat.get("title") or ""), chat_type, status, can_invite, problem)


async def register_group(ctx: JobContext, job: Job) -> None:
    """`tgms_register_group`: check the chat with the group-management bot, then register it with its
    real title and type (or, with `reactivate`, reactivate the managed group). A chat the bot cannot
    manage fails the job at once, the reason as its error (the control center shows it). Idempotent:
    registering twice updates the same row."""
    payload = job.payload if isinstance(job.payload, dict) else {}
    group_id = payload.get("group_id")
    if not isinstance(group_id, int) or isinstance(group_id, bool):
        raise PermanentFailure("payload has no integer group_id")
    phase = payload.get("phase")
    if phase is not None and phase not in groups.PHASES:
        raise PermanentFailure(f"phase must be one of {', '.join(groups.PHASES)}")
    bots = await bots_for(ctx)
    role = bots.resolve_role(None)
    try:
        check = await check_chat(bots.client(role), group_id)
    except RetryAfter as exc:
        raise Snooze(exc.retry_after, f"429 from Telegram: retry after {exc.retry_after:g}s") from None
    if payload.get("reactivate") is True:
        if check.problem is not None:
            raise PermanentFailure(f"group {group_id} not reactivated: {check.problem}")
        async with ctx.db.connection() as conn:
            found = await groups.reactivate(conn, group_id)
        if not found:
            raise PermanentFailure(f"group {group_id} not reactivated: it is no longer managed")
        log.info("group %s reactivated by an operator", group_id)
        return
    if check.problem is not None:
        raise PermanentFailure(f"group {group_id} not registered: {check.problem}")
    title = str(payload.get("title") or check.title)
    async with ctx.db.connection() as conn:
        done = await groups.register(
            conn, group_id, title=title, chat_type=check.chat_type, phase=phase, bot_can_invite=check.can_invite
        )
    log.info("group %s (%s) %s by an operator", group_id, title, "registered" if done.inserted else "updated")
