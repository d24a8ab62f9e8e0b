"""`process_telegram_update` (main worker): every update that is not a join request.

- `my_chat_member` of the group-management bot: made administrator in a group → the group is
  registered in `managed_groups` (phase growth; active when the bot may invite users, i.e. approve
  join requests; title, chat type, and the user who promoted it as admin_user_id). Demoted, removed
  or kicked → the group is deactivated with the reason. Promoted again → reactivated, unless an
  operator deactivated it by hand (the activation rule of tgms_tui/backend/groups.py).
- Service messages: `migrate_to_chat_id` / `migrate_from_chat_id` rewrite the group id everywhere;
  `new_chat_title` renames the group.
- Messages, joins, leaves and `chat_member` updates in managed groups record member activity (the
  only way TGMS can know who is inactive: the Bot API cannot list members). Those that need nothing
  else never become jobs: the intake's statement records their activity itself
  (tgms_tui/backend/webhook_updates.py); leaves, invite-link joins and anything unusual come here.
- `/start` and `/help` in a private chat are answered by the bot that received them, each saying what
  it does: the main bot points to the group-management bot, which is the one to make administrator.

Unknown update types are ignored, and malformed ones are logged and completed: retrying cannot fix
them. Database and Telegram errors propagate, so the runner retries them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import psycopg

from tgms_tui.backend import groups, invite_links, members
from tgms_tui.backend.groups import REASON_KICKED, REASON_NOT_ADMIN, REASON_REMOVED
from tgms_tui.backend.queue import Job

from .bots import Bots, bots_for, client_for
from .runner import JobContext, Snooze
from .telegram_api import Forbidden, RetryAfter, TelegramError

log = logging.getLogger(__name__)

JOB_TYPE = "process_telegram_update"
GROUP_TYPES = ("group", "supergroup", "channel")
MESSAGE_KEYS = ("message", "edited_message")
PRESENT = ("creator", "administrator", "member")

# What `/start` and `/help` answer: each bot says what it does. Only the group-management bot
# registers groups (when made an administrator), so only its text asks to be made one.
GROUP_BOT_TEXT = (
    "I am the group management bot of TGMS.\n\n"
    "What I do in groups where I am an administrator:\n"
    '• approve join requests at once (give me the "Invite users via link" right),\n'
    "• deliver the announcements your operators broadcast to their groups,\n"
    "• track member counts, and remove long-inactive members where the group opted in.\n\n"
    "To start, add me to your group as an administrator with the right to invite users: that "
    "registers the group with TGMS. Commands: /start, /help."
)
MAIN_BOT_TEXT = (
    "I am the main bot of this TGMS service: I answer /start and /help. I do not manage groups.\n\n"
    "Join requests, announcements and member counts are handled by {group_bot}: to have your group "
    "managed, add that bot (not me) to it as an administrator with the right to invite users. "
    "Commands: /start, /help."
)
# One bot configured for both roles (or only one token): it is the main bot and the group bot at once.
BOTH_TEXT = GROUP_BOT_TEXT.replace(
    "I am the group management bot of TGMS.", "I am the TGMS bot: the main bot and the group management bot in one."
)
UNNAMED_GROUP_BOT = "our group management bot"

# The group bot's @username by its token's bot id, asked once per process (getMe).
_group_bot_names: dict[int | None, str] = {}


def help_text(bot_tokens: dict[str, str], role: str, group_bot: str = UNNAMED_GROUP_BOT) -> str:
    """The `/start` answer of the bot in `role`, given the configured tokens by role."""
    if len(set(bot_tokens.values())) <= 1:
        return BOTH_TEXT
    return GROUP_BOT_TEXT if role == "tgms" else MAIN_BOT_TEXT.format(group_bot=group_bot)


class MalformedUpdate(ValueError):
    """The update lacks a field it must have; retrying cannot help."""


def _user(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), int):
        raise MalformedUpdate("user without an integer id")
    return obj


def _chat(obj: Any) -> tuple[int, str, str]:
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), int) or not isinstance(obj.get("type"), str):
        raise MalformedUpdate("chat without an integer id and a type")
    return int(obj["id"]), str(obj["type"]), str(obj.get("title") or "")


def _date(obj: dict[str, Any]) -> int:
    date = obj.get("date")
    if not isinstance(date, int) or date <= 0:
        raise MalformedUpdate("missing or invalid date")
    return date


class UpdateHandler:
    """Handles one update for the bot that received it."""

    def __init__(self, ctx: JobContext, job: Job, bots: Bots) -> None:
        self.ctx = ctx
        self.job = job
        self.bots = bots
        self.role = self.bots.resolve_role(job.payload.get("bot"), default="main")

    @property
    def manages_groups(self) -> bool:
        return self.role == self.bots.management_role

    async def handle(self, update: dict[str, Any]) -> None:
        kinds = [k for k in update if k != "update_id"]
        if "my_chat_member" in update:
            await self._my_chat_member(update["my_chat_member"])
        elif "chat_member" in update:
            await self._chat_member(update["chat_member"])
        elif any(k in update for k in MESSAGE_KEYS):
            key = next(k for k in MESSAGE_KEYS if k in update)
            await self._message(update[key], edited=key != "message")
        else:
            log.debug("update %s of type %s: nothing to do", update.get("update_id"), ",".join(kinds) or "?")

    # ------------------------------------------------------------ the bot's own membership

    async def _my_chat_member(self, change: Any) -> None:
        if not isinstance(change, dict):
            raise MalformedUpdate("my_chat_member is not an object")
        chat_id, chat_type, title = _chat(change.get("chat"))
        if chat_type not in GROUP_TYPES:
            return  # a private chat: the user blocked or unblocked the bot
        actor = _user(change.get("from"))["id"]
        new = change.get("new_chat_member")
        if not isinstance(new, dict) or not isinstance(new.get("status"), str):
            raise MalformedUpdate("my_chat_member without new_chat_member.status")
        if not self.manages_groups:
            log.info(
                "the %s bot's status in %s is now %s (it does not manage groups)", self.role, chat_id, new["status"]
            )
            return
        status = new["status"]
        async with self.ctx.db.connection() as conn:
            if status in ("administrator", "creator"):
                can_invite = status == "creator" or bool(new.get("can_invite_users"))
                active, inserted = await groups.bot_promoted(
                    conn, chat_id, actor=actor, title=title, chat_type=chat_type, can_invite=can_invite
                )
                done, state = "registered" if inserted else "updated", "active" if active else "inactive"
                log.info("group %s (%s) %s by user %s: %s", chat_id, title, done, actor, state)
                return
            if status in ("left", "kicked"):
                reason = (REASON_KICKED if status == "kicked" else REASON_REMOVED).format(actor=actor)
            else:  # member, restricted: still in the group but without admin rights
                reason = REASON_NOT_ADMIN.format(actor=actor)
            if await groups.deactivate(conn, chat_id, reason, bot_can_invite=False, title=title):
                log.info("group %s deactivated: %s", chat_id, reason)

    # ------------------------------------------------------------ other members

    async def _chat_member(self, change: Any) -> None:
        if not isinstance(change, dict):
            raise MalformedUpdate("chat_member is not an object")
        chat_id, chat_type, _ = _chat(change.get("chat"))
        new = change.get("new_chat_member")
        if not isinstance(new, dict) or not isinstance(new.get("status"), str):
            raise MalformedUpdate("chat_member without new_chat_member.status")
        if chat_type not in GROUP_TYPES:
            return
        user = _user(new.get("user"))
        status = new["status"]
        if status == "restricted" and new.get("is_member") is False:
            status = "left"
        await self._record(chat_id, [user], status, _date(change), False)
        await self._link_membership(chat_id, user["id"], change, status)

    async def _link_membership(self, chat_id: int, user_id: int, change: dict[str, Any], status: str) -> None:
        """Joins through an invite link and the leaves that follow them (invite-link retention)."""
        old = change.get("old_chat_member")
        was_in = isinstance(old, dict) and (
            old.get("status") in PRESENT or (old.get("status") == "restricted" and old.get("is_member") is True)
        )
        now_in = status in PRESENT or status == "restricted"
        link = change.get("invite_link")
        url = link.get("invite_link") if isinstance(link, dict) else None
        if now_in and not was_in and isinstance(url, str):
            async with self.bots.db.connection() as conn:
                await invite_links.record_join(conn, chat_id, user_id, url, _date(change))
        elif was_in and not now_in:
            async with self.bots.db.connection() as conn:
                await invite_links.record_leave(conn, chat_id, user_id, _date(change))

    async def _message(self, message: Any, *, edited: bool) -> None:
        if not isinstance(message, dict):
            raise MalformedUpdate("message is not an object")
        chat_id, chat_type, _ = _chat(message.get("chat"))
        if chat_type == "private":
            if not edited:
                await self._private_command(chat_id, message)
            return
        if chat_type not in GROUP_TYPES:
            return
        date = _date(message)
        if isinstance(message.get("migrate_to_chat_id"), int):
            await self._migrate(chat_id, int(message["migrate_to_chat_id"]))
            return
        if isinstance(message.get("migrate_from_chat_id"), int):
            await self._migrate(int(message["migrate_from_chat_id"]), chat_id)
            return
        if isinstance(message.get("new_chat_title"), str):
            async with self.ctx.db.connection() as conn:
                await groups.set_title(conn, chat_id, message["new_chat_title"])
        joined = message.get("new_chat_members")
        told = [(_user(u), "member") for u in joined] if isinstance(joined, list) else []
        left = message.get("left_chat_member")
        if left is not None:
            told.append((_user(left), "left"))
        sender = message.get("from")
        # An anonymous admin or a channel posts as `sender_chat`: not a member we can track. A sender
        # who is also told about (joined by themselves) needs no second, softer write.
        seen = []
        if sender is not None and "sender_chat" not in message and left is None:
            user = _user(sender)
            if all(u["id"] != user["id"] for u, _ in told):
                seen.append(user)
        writes = [([u for u, s in told if s == status], status, False) for status in sorted({s for _, s in told})]
        if seen:
            writes.append((seen, "member", True))
        if len(writes) == 1:  # the usual case: one statement, alone in autocommit
            users, status, soft = writes[0]
            await self._record(chat_id, users, status, date, soft)
        elif writes:
            async with self.ctx.db.connection() as conn:  # several writes: one transaction
                for users, status, soft in writes:
                    await self._record(chat_id, users, status, date, soft, conn)

    async def _migrate(self, old_id: int, new_id: int) -> None:
        async with self.ctx.db.connection() as conn:
            await groups.rewrite_id(conn, old_id, new_id)

    async def _record(
        self,
        chat_id: int,
        users: Iterable[dict[str, Any]],
        status: str,
        date: int,
        soft: bool,
        conn: psycopg.AsyncConnection[Any] | None = None,
    ) -> None:
        """Upsert the users' activity, on `conn` or else alone in autocommit (one round trip)."""
        if conn is not None:
            await members.record_activity(conn, chat_id, users, status, date, soft)
            return
        async with self.bots.db.connection() as own:
            await members.record_activity(own, chat_id, users, status, date, soft)

    # ------------------------------------------------------------ private chats

    async def _private_command(self, chat_id: int, message: dict[str, Any]) -> None:
        text = message.get("text")
        if not isinstance(text, str) or not text.startswith("/"):
            return
        command = text.split(maxsplit=1)[0].split("@", 1)[0].lower()
        if command not in ("/start", "/help"):
            return
        client = await client_for(self.ctx, self.job, default="main")
        tokens = self.bots.settings.bot_tokens()
        text = help_text(tokens, self.role, await self._group_bot_name(tokens))
        try:
            await client.send_message(chat_id, text)
        except RetryAfter as exc:
            raise Snooze(exc.retry_after, f"429 from Telegram: retry after {exc.retry_after:g}s") from None
        except Forbidden as exc:
            log.info("cannot answer %s in %s: %s", command, chat_id, exc.description)
        except TelegramError as exc:
            if exc.retryable and not exc.maybe_delivered:
                raise
            log.warning("answer to %s in %s: %s", command, chat_id, exc.description)

    async def _group_bot_name(self, tokens: dict[str, str]) -> str:
        """The group-management bot's @username, for the main bot's answer (asked once per process)."""
        if self.role == "tgms" or "tgms" not in tokens or len(set(tokens.values())) <= 1:
            return UNNAMED_GROUP_BOT
        client = self.bots.client("tgms", paced=False)  # getMe sends nothing: no rate-limit token
        if client.bot_id not in _group_bot_names:
            try:
                username = (await client.get_me()).get("username")
            except TelegramError as exc:
                log.info("getMe of the group bot failed (%s): /start names it generically", exc)
                return UNNAMED_GROUP_BOT
            _group_bot_names[client.bot_id] = f"@{username}" if username else UNNAMED_GROUP_BOT
        return _group_bot_names[client.bot_id]


async def process_telegram_update(ctx: JobContext, job: Job) -> None:
    """Job handler of the main worker for every non-join-request update."""
    payload = job.payload if isinstance(job.payload, dict) else {}
    update = payload.get("update")
    if not isinstance(update, dict):
        log.warning("job %d: payload has no update object; ignored", job.job_id)
        return
    try:
        await UpdateHandler(ctx, job, await bots_for(ctx)).handle(update)
    except (MalformedUpdate, KeyError, TypeError) as exc:
        log.warning("update %s (job %d) is malformed and was ignored: %s", update.get("update_id"), job.job_id, exc)
    except psycopg.DataError as exc:
        # e.g. an id out of range: the update itself is bad, the database is fine.
        log.warning(
            "update %s (job %d) has data PostgreSQL rejects; ignored: %s", update.get("update_id"), job.job_id, exc
        )


__all__ = [
    "BOTH_TEXT",
    "GROUP_BOT_TEXT",
    "JOB_TYPE",
    "MAIN_BOT_TEXT",
    "UpdateHandler",
    "help_text",
    "process_telegram_update",
]
