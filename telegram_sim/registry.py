"""The simulator's registry: bots, users, chats, messages and the shared lock around them.

Every mutation happens under one re-entrant lock, so the HTTP handlers (event-loop thread), tests
poking `SimServer.state` from their own thread and the webhook dispatcher never see half an update.
This layer only stores and looks things up; `SimState` (state.py) adds the events that change the
world and queue updates.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from telegram_sim import objects
from telegram_sim.calls import CallLog
from telegram_sim.config import SimConfig
from telegram_sim.faults import FaultBook
from telegram_sim.flood import FloodControl
from telegram_sim.model import Bot, CallbackQuery, Chat, Member, StoredMessage, User, WebhookSettings

JSON = dict[str, Any]

_FIRST_NAMES = ("Ann", "Boris", "Chen", "Dana", "Emil", "Fatima", "Goran", "Hana", "Ivan", "Julia",
                "Kofi", "Lena", "Mateo", "Nadia", "Oleg", "Priya", "Quinn", "Rosa", "Sami", "Tara")  # fmt: skip


class SimError(Exception):
    """A control-API request that cannot be carried out (unknown chat, bad spec...)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def token_is_well_formed(token: str) -> bool:
    """The Bot API server's own check (ClientManager::send) before it looks the token up."""
    if not token or token[0] == "0" or len(token) > 80 or "/" in token or ":" not in token:
        return False
    prefix = token.split(":", 1)[0]
    if not prefix.isdigit():
        return False
    return 0 < int(prefix) < (1 << 54)


class Registry:
    """Lookups and bookkeeping shared by the Bot API methods, the control API and the events."""

    def __init__(self, config: SimConfig | None = None, *, seed: int | None = None,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.config = config or SimConfig()
        self.lock = threading.RLock()
        self.clock = clock
        self.rng = random.Random(seed)
        self.users: dict[int, User] = {}
        self.bots: dict[int, Bot] = {}
        self._tokens: dict[str, int] = {}
        self.chats: dict[int, Chat] = {}
        self.private_chats: dict[tuple[int, int], Chat] = {}
        self.messages: dict[int, list[StoredMessage]] = {}
        # messages deleted through the Bot API, kept so the control API can show what went
        self.deleted_messages: dict[int, list[StoredMessage]] = {}
        self.flood = FloodControl(self.config)
        self.faults = FaultBook()
        self.calls = CallLog(self.config.max_recorded_calls)
        self._listeners: list[Callable[[int], None]] = []
        self._file_seq = 0
        self.photos: dict[str, list[JSON]] = {}  # file_id -> the PhotoSize list it belongs to
        # Every file that arrived in a request (multipart), oldest first: "uploaded once" is checkable.
        self.uploads: list[JSON] = []
        self.commands: dict[int, list[Any]] = {}  # bot id -> setMyCommands list
        self.callback_queries: dict[str, CallbackQuery] = {}
        # (bot id, user id) pairs the bot learnt of from a join request: it knows the user, so writing
        # to them outside the request's window is "can't initiate conversation", not "chat not found".
        self.requesters_seen: set[tuple[int, int]] = set()

    def add_listener(self, callback: Callable[[int], None]) -> None:
        """`callback(bot_id)` runs (under the lock, must not block) when a bot's queue or webhook changes."""
        with self.lock:
            self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[int], None]) -> None:
        with self.lock:
            if callback in self._listeners:
                self._listeners.remove(callback)

    def notify(self, bot_id: int) -> None:
        for callback in list(self._listeners):
            callback(bot_id)

    def now(self) -> int:
        return int(self.clock())

    def add_bot(self, token: str | None = None, *, username: str | None = None, first_name: str | None = None,
                can_read_all_group_messages: bool = False) -> Bot:  # fmt: skip
        """Register a bot; a missing token is generated (`<id>:<35 random chars>`)."""
        with self.lock:
            if token is None:
                bot_id = self._fresh_id(5_000_000_000, 8_999_999_999)
                token = f"{bot_id}:{_token_secret()}"
            if not token_is_well_formed(token):
                raise SimError("malformed bot token (expected <id>:<secret>)")
            bot_id = int(token.split(":", 1)[0])
            if token in self._tokens:
                return self.bots[self._tokens[token]]
            if bot_id in self.bots:
                raise SimError(f"a bot with id {bot_id} already exists", 409)
            n = len(self.bots) + 1
            user = User(
                id=bot_id,
                first_name=first_name or f"TGMS Sim Bot {n}",
                username=username or f"tgms_sim{bot_id}_bot",
                is_bot=True,
            )
            bot = Bot(user=user, token=token, can_read_all_group_messages=can_read_all_group_messages)
            bot.webhook.max_connections = self.config.default_max_connections
            bot.next_update_id = self.rng.randint(100_000_000, 800_000_000)
            self.users[bot_id] = user
            self.bots[bot_id] = bot
            self._tokens[token] = bot_id
            return bot

    def set_webhook(self, bot_ref: Any, url: str, *, secret_token: str | None = None,
                    allowed_updates: list[str] | None = None, max_connections: int | None = None) -> Bot:  # fmt: skip
        """Point a bot's webhook somewhere directly (setup helper; no flood rule, no validation)."""
        with self.lock:
            bot = self.resolve_bot(bot_ref)
            hook = bot.webhook
            hook.url = url
            hook.secret_token = secret_token or None
            hook.ip_address = "127.0.0.1" if url else None
            hook.last_error_date = None
            hook.last_error_message = None
            if max_connections is not None:
                hook.max_connections = min(max(int(max_connections), 1), 100)
            if allowed_updates is not None:
                bot.allowed_updates = list(allowed_updates)
            self.notify(bot.id)
            return bot

    def bot_by_token(self, token: str) -> Bot | None:
        with self.lock:
            bot_id = self._tokens.get(token)
            return self.bots.get(bot_id) if bot_id is not None else None

    def resolve_bot(self, ref: int | str | None) -> Bot:
        """A bot by id or username (with or without '@'); None means the first registered bot."""
        with self.lock:
            if ref is None or ref == "":
                if not self.bots:
                    raise SimError("no bots registered", 404)
                return next(iter(self.bots.values()))
            text = str(ref).lstrip("@")
            if text.lstrip("-").isdigit() and int(text) in self.bots:
                return self.bots[int(text)]
            for bot in self.bots.values():
                if bot.username.lower() == text.lower():
                    return bot
            raise SimError(f"unknown bot {ref!r}", 404)

    def create_user(self, first_name: str | None = None, *, id: int | None = None, last_name: str | None = None,
                    username: str | None = None, language_code: str | None = None,
                    is_bot: bool = False) -> User:  # fmt: skip
        with self.lock:
            user_id = int(id) if id is not None else self._fresh_id(100_000_000, 7_999_999_999)
            if user_id in self.users:
                raise SimError(f"user {user_id} already exists", 409)
            if user_id <= 0:
                raise SimError("user ids are positive")
            user = User(
                id=user_id,
                first_name=first_name or self.rng.choice(_FIRST_NAMES),
                last_name=last_name,
                username=username,
                is_bot=is_bot,
                language_code=language_code,
            )
            self.users[user_id] = user
            return user

    def ensure_user(self, spec: Any) -> User:
        """A user from an id (created if new), a dict spec, or None (a fresh user)."""
        with self.lock:
            if isinstance(spec, User):
                return spec
            if spec is None:
                return self.create_user()
            if isinstance(spec, dict):
                if spec.get("id") is not None and int(spec["id"]) in self.users:
                    return self.users[int(spec["id"])]
                fields = {k: spec[k] for k in ("first_name", "last_name", "username", "language_code", "is_bot")
                          if k in spec}  # fmt: skip
                return self.create_user(id=spec.get("id"), **fields)
            user_id = int(spec)
            if user_id in self.users:
                return self.users[user_id]
            return self.create_user(id=user_id)

    def user(self, user_id: int) -> User:
        with self.lock:
            user = self.users.get(int(user_id))
            if user is None:
                raise SimError(f"unknown user {user_id}", 404)
            return user

    def _fresh_id(self, low: int, high: int) -> int:
        while True:
            candidate = self.rng.randint(low, high)
            if candidate not in self.users and -candidate not in self.chats:
                return candidate

    def chat(self, chat_id: int) -> Chat:
        with self.lock:
            chat = self.chats.get(int(chat_id))
            if chat is None:
                raise SimError(f"unknown chat {chat_id}", 404)
            return chat

    def new_chat_id(self, chat_type: str) -> int:
        with self.lock:
            while True:
                if chat_type == "group":
                    candidate = -self.rng.randint(4_000_000_000, 5_099_999_999)
                else:
                    candidate = -(1_000_000_000_000 + self.rng.randint(1_000_000_000, 3_999_999_999))
                if candidate not in self.chats:
                    return candidate

    def private_chat(self, bot: Bot, user: User) -> Chat:
        with self.lock:
            key = (bot.id, user.id)
            chat = self.private_chats.get(key)
            if chat is None:
                chat = Chat(id=user.id, type="private", private_user_id=user.id, created_at=self.now())
                chat.members[user.id] = Member(user.id, "member")
                chat.members[bot.id] = Member(bot.id, "member")
                self.private_chats[key] = chat
                self.messages.setdefault(user.id, [])
            return chat

    def chat_json(self, chat: Chat) -> JSON:
        private_user = self.users.get(chat.private_user_id) if chat.private_user_id else None
        return objects.chat_json(chat, private_user)

    def chat_summary(self, chat: Chat) -> JSON:
        """The control API's view of a chat (`GET /_sim/chats` rows: id, type, title, member_count...)."""
        with self.lock:
            bots = {}
            for bot in self.bots.values():
                member = chat.members.get(bot.id)
                if member is not None:
                    bots[str(bot.id)] = {
                        "username": bot.username,
                        "status": member.status,
                        "rights": {k: v for k, v in member.rights.items() if v},
                    }
            return {
                "id": chat.id,
                "type": chat.type,
                "title": chat.title,
                "username": chat.username,
                "member_count": chat.member_count,
                "deleted": chat.deleted,
                "upgraded_to": chat.upgraded_to,
                "upgraded_from": chat.upgraded_from,
                "pending_join_requests": len(chat.join_requests),
                "message_count": len(self.messages.get(chat.id, [])),
                "bots": bots,
            }

    def chat_detail(self, chat: Chat) -> JSON:
        with self.lock:
            data = self.chat_summary(chat)
            data["members"] = [objects.member_json(chat, m, self.users[m.user_id]) for m in chat.members.values()]
            data["join_requests"] = [
                {"user": objects.user_json(self.users[r.user_id]), "date": r.date, "bio": r.bio}
                for r in chat.join_requests.values()
            ]
            data["permissions"] = objects.permissions_json(chat.permissions)
            return data

    def member_of(self, chat: Chat, user_id: int) -> Member:
        """The member record, as of now: a ban whose `until_date` has passed has ended (Telegram
        lifts it by itself; the user is then simply not in the chat)."""
        member = chat.members.get(user_id)
        if member is None:
            return objects.left_member(user_id)
        if member.status == "kicked" and member.until_date and member.until_date <= self.now():
            chat.members[user_id] = member = objects.left_member(user_id)
        return member

    def _owner_id(self, chat: Chat) -> int | None:
        for member in chat.members.values():
            if member.status == "creator":
                return member.user_id
        return None

    def next_message_id(self, chat: Chat) -> int:
        message_id = chat.next_message_id
        chat.next_message_id += 1
        return message_id

    def store_message(self, chat: Chat, data: JSON, *, sent_by_bot: int | None = None) -> StoredMessage:
        stored = StoredMessage(chat.id, data["message_id"], data, sent_by_bot=sent_by_bot, at=self.clock())
        self.messages.setdefault(chat.id, []).append(stored)
        return stored

    def remove_message(self, stored: StoredMessage) -> None:
        """Delete a message (Bot API): gone from the chat, kept for the control API's record."""
        self.messages.get(stored.chat_id, []).remove(stored)
        stored.pinned = False
        stored.deleted_at = self.clock()
        self.deleted_messages.setdefault(stored.chat_id, []).append(stored)

    def find_message(self, chat_id: int, message_id: int) -> StoredMessage | None:
        for stored in self.messages.get(chat_id, []):
            if stored.message_id == message_id:
                return stored
        return None

    def _bots_present(self, chat: Chat) -> list[Bot]:
        return [bot for bot in self.bots.values() if chat.members.get(bot.id) and chat.members[bot.id].present]

    def _can(self, chat: Chat, user_id: int, right: str) -> bool:
        member = chat.members.get(user_id)
        if member is None:
            return False
        if member.status == "creator":
            return True
        return member.status == "administrator" and bool(member.rights.get(right))

    def pending_updates(self, bot: Bot) -> list[JSON]:
        with self.lock:
            return [p.payload for p in bot.pending]

    def new_file_ids(self) -> tuple[str, str]:
        with self.lock:
            self._file_seq += 1
            seq = self._file_seq
        unique = f"AQAD{seq:06d}{secrets.token_hex(4)}"
        return f"AgACAgIAAxkBAAI{seq:06d}{secrets.token_urlsafe(24)}", unique

    def record_upload(self, method: str, chat_id: Any, filename: str, data: bytes) -> None:
        """Remember that a request carried a file (its bytes are not kept, only their size and hash)."""
        with self.lock:
            self.uploads.append({"method": method, "chat_id": chat_id, "filename": filename, "size": len(data),
                                 "sha256": hashlib.sha256(data).hexdigest(), "at": time.time()})  # fmt: skip

    def reset(self, *, keep_bots: bool = True, clear_webhooks: bool = False) -> None:
        """Forget chats, users, messages, calls, faults and queued updates (bots and, unless
        `clear_webhooks`, their webhooks stay)."""
        with self.lock:
            self.chats.clear()
            self.private_chats.clear()
            self.messages.clear()
            self.deleted_messages.clear()
            self.photos.clear()
            self.uploads.clear()
            bot_users = {bot_id: self.users[bot_id] for bot_id in self.bots}
            self.users = dict(bot_users) if keep_bots else {}
            if not keep_bots:
                self.bots.clear()
                self._tokens.clear()
            for bot in self.bots.values():
                bot.pending.clear()
                bot.webhook.last_error_date = None
                bot.webhook.last_error_message = None
                if clear_webhooks:
                    bot.webhook = WebhookSettings(max_connections=self.config.default_max_connections)
                    bot.allowed_updates = None
            self.commands.clear()
            self.callback_queries.clear()
            self.requesters_seen.clear()
            self.flood.reset()
            self.faults.clear()
            self.calls.clear()
            for bot_id in list(self.bots):
                self.notify(bot_id)


def _token_secret() -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
    return "AA" + "".join(secrets.choice(alphabet) for _ in range(33))
