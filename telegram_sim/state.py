"""The simulator's in-memory Telegram: registry of bots, users and chats, plus the events they cause.

Every mutation happens under one re-entrant lock, so the HTTP handlers (event-loop thread), tests
poking `SimServer.state` from their own thread and the webhook dispatcher never see half an update.
Domain operations (a user asks to join, a member leaves, a group is upgraded...) live here because
the Bot API methods and the control API both trigger them; each one queues the updates Telegram
would send, per bot, filtered by that bot's `allowed_updates` and privacy mode, and wakes listeners
(the webhook dispatcher) through `add_listener`.
"""

from __future__ import annotations

import json
import random
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from telegram_sim import objects
from telegram_sim.calls import CallLog
from telegram_sim.config import SimConfig
from telegram_sim.faults import FaultBook
from telegram_sim.flood import FloodControl
from telegram_sim.markdown import auto_entities
from telegram_sim.model import (
    ADMIN_RIGHTS,
    DEFAULT_BOT_ADMIN_RIGHTS,
    MEMBER_STATUSES,
    PERMISSIONS,
    Bot,
    Chat,
    JoinRequest,
    Member,
    PendingUpdate,
    StoredMessage,
    User,
    WebhookSettings,
    full_permissions,
)

JSON = dict[str, Any]

# Telegram's default when allowed_updates is unset or empty.
NOT_DEFAULT_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

TOKEN_RE = re.compile(r"^(\d{1,20}):([A-Za-z0-9_-]{1,70})$")

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


class SimState:
    """All simulated Telegram state for one simulator instance."""

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
        self.flood = FloodControl(self.config)
        self.faults = FaultBook()
        self.calls = CallLog(self.config.max_recorded_calls)
        self._listeners: list[Callable[[int], None]] = []
        self._file_seq = 0
        self.photos: dict[str, list[JSON]] = {}  # file_id -> the PhotoSize list it belongs to
        self.commands: dict[int, list[Any]] = {}  # bot id -> setMyCommands list

    # --- listeners ---------------------------------------------------------------------------

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

    # --- bots and users ----------------------------------------------------------------------

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

    # --- chats -------------------------------------------------------------------------------

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

    def create_chat(self, chat_type: str = "supergroup", title: str | None = None, *, id: int | None = None,
                    username: str | None = None, description: str | None = None, owner: Any = None,
                    members: Any = None, admins: Iterable[Any] = (), bots: Any = None,
                    permissions: dict[str, bool] | None = None, announce: bool = False) -> Chat:  # fmt: skip
        """Make a group/supergroup/channel with an owner, members, admins and bots already inside.

        `members`: a count of fresh users, or a list of user ids / user specs / {"user": ..., "status":
        ..., "rights": {...}}. `bots`: None = every registered bot as an administrator with the rights
        TGMS needs; a list of bot refs (same rights); or {bot_ref: {"status": ..., "rights": {...}}}.
        `announce` queues the my_chat_member updates of the bots joining (off for quiet setup).
        """
        if chat_type not in ("group", "supergroup", "channel"):
            raise SimError("type must be group, supergroup or channel")
        with self.lock:
            chat_id = int(id) if id is not None else self.new_chat_id(chat_type)
            if chat_id >= 0:
                raise SimError("group and channel ids are negative")
            if chat_id in self.chats:
                raise SimError(f"chat {chat_id} already exists", 409)
            now = self.now()
            chat = Chat(
                id=chat_id,
                type=chat_type,
                title=title or f"Sim {chat_type} {abs(chat_id) % 100000}",
                username=username.lstrip("@") if username else None,
                description=description,
                permissions={**full_permissions(), **(permissions or {})},
                created_at=now,
            )
            if chat_type == "supergroup":
                # New supergroups do not let ordinary members change info or pin by default.
                chat.permissions.update({"can_change_info": False, "can_pin_messages": False, **(permissions or {})})
            self.chats[chat_id] = chat
            self.messages[chat_id] = []
            owner_user = self.ensure_user(owner)
            chat.members[owner_user.id] = Member(owner_user.id, "creator", joined_at=now)
            if isinstance(members, int):
                members = [None] * members
            for spec in members or []:
                user_spec, status, rights = _member_spec(spec)
                user = self.ensure_user(user_spec)
                chat.members[user.id] = _make_member(user.id, status, rights, now)
            for spec in admins:
                user_spec, _status, rights = _member_spec(spec)
                user = self.ensure_user(user_spec)
                chat.members[user.id] = _make_member(user.id, "administrator", rights or _ADMIN_DEFAULT, now)
            for bot, status, rights in self._bot_specs(bots):
                member = _make_member(bot.id, status, rights, now)
                chat.members[bot.id] = member
                if announce:
                    self._emit_my_chat_member(chat, bot, objects.left_member(bot.id), member, owner_user.id)
            return chat

    def _bot_specs(self, bots: Any) -> list[tuple[Bot, str, dict[str, bool] | None]]:
        if bots is None:
            return [(bot, "administrator", dict(DEFAULT_BOT_ADMIN_RIGHTS)) for bot in self.bots.values()]
        if isinstance(bots, dict):
            out = []
            for ref, spec in bots.items():
                spec = spec or {}
                status = spec.get("status", "administrator")
                rights = spec.get("rights")
                if status == "administrator" and rights is None:
                    rights = dict(DEFAULT_BOT_ADMIN_RIGHTS)
                out.append((self.resolve_bot(ref), status, rights))
            return out
        return [(self.resolve_bot(ref), "administrator", dict(DEFAULT_BOT_ADMIN_RIGHTS)) for ref in bots]

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

    # --- membership events -------------------------------------------------------------------

    def member_of(self, chat: Chat, user_id: int) -> Member:
        return chat.members.get(user_id) or objects.left_member(user_id)

    def change_member(self, chat: Chat, user_id: int, new: Member, *, actor_id: int | None = None,
                      via_join_request: bool = False, invite_link: JSON | None = None,
                      service_message: bool = True) -> Member:  # fmt: skip
        """Set a member's status and queue what Telegram sends: chat_member / my_chat_member and the
        new_chat_members / left_chat_member service message when presence changes."""
        with self.lock:
            old = self.member_of(chat, user_id)
            chat.members[user_id] = new
            if not new.joined_at and new.present:
                new.joined_at = self.now()
            actor = actor_id if actor_id is not None else user_id
            subject_bot = self.bots.get(user_id)
            if subject_bot is not None:
                self._emit_my_chat_member(chat, subject_bot, old, new, actor)
            self._emit_chat_member(chat, user_id, old, new, actor, via_join_request, invite_link)
            if service_message and chat.type != "channel":
                user = self.users[user_id]
                if new.present and not old.present:
                    self._service_message(chat, self.users[actor], {
                        "new_chat_participant": objects.user_json(user),
                        "new_chat_member": objects.user_json(user),
                        "new_chat_members": [objects.user_json(user)],
                    })  # fmt: skip
                elif old.present and not new.present:
                    self._service_message(chat, self.users[actor], {
                        "left_chat_participant": objects.user_json(user),
                        "left_chat_member": objects.user_json(user),
                    })  # fmt: skip
            return new

    def add_member(self, chat_id: int, user: Any, *, status: str = "member", rights: dict[str, bool] | None = None,
                   actor: Any = None, via_join_request: bool = False) -> Member:  # fmt: skip
        with self.lock:
            chat = self.chat(chat_id)
            member_user = self.ensure_user(user)
            if status not in MEMBER_STATUSES:
                raise SimError(f"status must be one of {', '.join(MEMBER_STATUSES)}")
            actor_id = self.ensure_user(actor).id if actor is not None else None
            new = _make_member(member_user.id, status, rights, self.now())
            chat.join_requests.pop(member_user.id, None)
            return self.change_member(chat, member_user.id, new, actor_id=actor_id, via_join_request=via_join_request)

    def remove_member(self, chat_id: int, user_id: int, *, kicked: bool = False, actor: Any = None,
                      until_date: int = 0) -> Member:  # fmt: skip
        with self.lock:
            chat = self.chat(chat_id)
            self.user(user_id)
            actor_id = self.ensure_user(actor).id if actor is not None else None
            new = Member(user_id, "kicked" if kicked else "left", until_date=until_date)
            return self.change_member(chat, user_id, new, actor_id=actor_id)

    def set_bot_status(self, chat_id: int, bot_ref: Any, *, status: str | None = None, action: str | None = None,
                       rights: dict[str, bool] | None = None, actor: Any = None) -> Member:  # fmt: skip
        """Add/kick/promote/demote/restrict the bot in a chat (queues my_chat_member)."""
        actions = {"add": "member", "kick": "kicked", "ban": "kicked", "remove": "left", "leave": "left",
                   "promote": "administrator", "demote": "member", "restrict": "restricted"}  # fmt: skip
        with self.lock:
            chat = self.chat(chat_id)
            bot = self.resolve_bot(bot_ref)
            if status is None:
                if action not in actions:
                    raise SimError(f"action must be one of {', '.join(actions)}")
                status = actions[action]
            if status not in MEMBER_STATUSES:
                raise SimError(f"status must be one of {', '.join(MEMBER_STATUSES)}")
            if status == "administrator" and rights is None:
                rights = dict(DEFAULT_BOT_ADMIN_RIGHTS)
            actor_id = self.ensure_user(actor).id if actor is not None else self._owner_id(chat)
            new = _make_member(bot.id, status, rights, self.now())
            return self.change_member(chat, bot.id, new, actor_id=actor_id)

    def _owner_id(self, chat: Chat) -> int | None:
        for member in chat.members.values():
            if member.status == "creator":
                return member.user_id
        return None

    # --- join requests -----------------------------------------------------------------------

    def create_join_request(self, chat_id: int, user: Any, *, bio: str | None = None,
                            invite_link: Any = None) -> JoinRequest:  # fmt: skip
        """A user asks to join: queue chat_join_request for the admin bots allowed to invite users."""
        with self.lock:
            chat = self.chat(chat_id)
            if not chat.active:
                raise SimError("chat is deleted or upgraded", 409)
            requester = self.ensure_user(user)
            if self.member_of(chat, requester.id).present:
                raise SimError("user is already a member", 409)
            link = self._invite_link(chat, invite_link)
            request = JoinRequest(chat.id, requester.id, self.now(), bio=bio, invite_link=link)
            chat.join_requests[requester.id] = request
            payload: JSON = {
                "chat": self.chat_json(chat),
                "from": objects.user_json(requester),
                "user_chat_id": requester.id,
                "date": request.date,
            }
            if bio:
                payload["bio"] = bio
            if link:
                payload["invite_link"] = link
            recipients = [bot for bot in self._bots_present(chat) if self._can(chat, bot.id, "can_invite_users")]
            self._emit("chat_join_request", payload, recipients, f"user:{requester.id}")
            return request

    def _invite_link(self, chat: Chat, spec: Any) -> JSON | None:
        if not spec:
            return None
        if isinstance(spec, dict) and "invite_link" in spec:
            return spec
        owner = self.users.get(self._owner_id(chat) or 0)
        link: JSON = {
            "invite_link": f"https://t.me/+{secrets.token_urlsafe(12)[:16]}",
            "creator": objects.user_json(owner) if owner else {"id": 0, "is_bot": False, "first_name": ""},
            "creates_join_request": True,
            "is_primary": False,
            "is_revoked": False,
        }
        if isinstance(spec, str):
            link["name"] = spec
        return link

    # --- messages ----------------------------------------------------------------------------

    def next_message_id(self, chat: Chat) -> int:
        message_id = chat.next_message_id
        chat.next_message_id += 1
        return message_id

    def store_message(self, chat: Chat, data: JSON, *, sent_by_bot: int | None = None) -> StoredMessage:
        stored = StoredMessage(chat.id, data["message_id"], data, sent_by_bot=sent_by_bot, at=self.clock())
        self.messages.setdefault(chat.id, []).append(stored)
        return stored

    def post_message(self, chat_id: int | None, user: Any, text: str, *, bot: Any = None,
                     reply_to_message_id: int | None = None) -> JSON:  # fmt: skip
        """A user writes in a chat (or privately to `bot` when chat_id is the user's id or None)."""
        with self.lock:
            sender = self.ensure_user(user)
            if chat_id is None or int(chat_id) > 0:
                target_bot = self.resolve_bot(bot)
                if chat_id is not None and int(chat_id) != sender.id:
                    raise SimError("a private chat's id is the user's id")
                chat = self.private_chat(target_bot, sender)
                if text.strip().startswith("/start"):
                    sender.started_bots.add(target_bot.id)
                    sender.blocked_bots.discard(target_bot.id)
                recipients = [target_bot]
            else:
                chat = self.chat(int(chat_id))
                if not chat.active:
                    raise SimError("chat is deleted or upgraded", 409)
                if not self.member_of(chat, sender.id).present:
                    raise SimError("only members can post", 409)
                recipients = []
            data: JSON = {
                "message_id": self.next_message_id(chat),
                "from": objects.user_json(sender),
                "chat": self.chat_json(chat),
                "date": self.now(),
                "text": text,
            }
            entities = auto_entities(text, [])
            if entities:
                data["entities"] = entities
            if reply_to_message_id is not None:
                replied = self.find_message(chat.id, int(reply_to_message_id))
                if replied is not None:
                    data["reply_to_message"] = replied.data
            self.store_message(chat, data)
            if chat.type != "private":
                recipients = [b for b in self._bots_present(chat) if self._sees_message(chat, b, data)]
            self._emit("message", data, recipients, f"chat:{chat.id}")
            return data

    def edit_message(self, chat_id: int, message_id: int, text: str) -> JSON:
        with self.lock:
            stored = self.find_message(int(chat_id), int(message_id))
            if stored is None:
                raise SimError("unknown message", 404)
            stored.data = {**stored.data, "text": text, "edit_date": self.now()}
            entities = auto_entities(text, [])
            stored.data.pop("entities", None)
            if entities:
                stored.data["entities"] = entities
            chat = self.chats.get(int(chat_id))
            if chat is None:  # private: deliver to the bots that share it
                recipients = [self.bots[b] for (b, u) in self.private_chats if u == int(chat_id)]
            else:
                recipients = [b for b in self._bots_present(chat) if self._sees_message(chat, b, stored.data)]
            self._emit("edited_message", stored.data, recipients, f"chat:{chat_id}")
            return stored.data

    def find_message(self, chat_id: int, message_id: int) -> StoredMessage | None:
        for stored in self.messages.get(chat_id, []):
            if stored.message_id == message_id:
                return stored
        return None

    def set_title(self, chat_id: int, title: str, *, actor: Any = None) -> JSON:
        with self.lock:
            chat = self.chat(chat_id)
            chat.title = title
            actor_user = self.ensure_user(actor) if actor is not None else self.users[self._owner_id(chat) or 0]
            return self._service_message(chat, actor_user, {"new_chat_title": title})

    def _service_message(self, chat: Chat, sender: User, fields: JSON, *,
                         sender_chat: JSON | None = None) -> JSON:  # fmt: skip
        data: JSON = {
            "message_id": self.next_message_id(chat),
            "from": objects.user_json(sender),
        }
        if sender_chat is not None:
            data["sender_chat"] = sender_chat
        data.update({"chat": self.chat_json(chat), "date": self.now(), **fields})
        self.store_message(chat, data)
        self._emit("message", data, self._bots_present(chat), f"chat:{chat.id}")
        return data

    # --- chat lifecycle ----------------------------------------------------------------------

    def delete_chat(self, chat_id: int) -> Chat:
        with self.lock:
            chat = self.chat(chat_id)
            chat.deleted = True
            chat.join_requests.clear()
            return chat

    def upgrade_chat(self, chat_id: int, *, new_id: int | None = None, actor: Any = None) -> Chat:
        """Basic group → supergroup: members carry over, service messages and my_chat_member queued."""
        with self.lock:
            old = self.chat(chat_id)
            if old.type != "group":
                raise SimError("only basic groups can be upgraded")
            if not old.active:
                raise SimError("group is already deleted or upgraded", 409)
            new_chat_id = int(new_id) if new_id is not None else self.new_chat_id("supergroup")
            if new_chat_id in self.chats:
                raise SimError(f"chat {new_chat_id} already exists", 409)
            now = self.now()
            new = Chat(
                id=new_chat_id,
                type="supergroup",
                title=old.title,
                description=old.description,
                permissions=dict(old.permissions),
                upgraded_from=old.id,
                created_at=now,
            )
            self.chats[new.id] = new
            self.messages[new.id] = []
            owner_id = self._owner_id(old)
            actor_user = self.ensure_user(actor) if actor is not None else self.users[owner_id or 0]
            for user_id, member in old.members.items():
                if user_id in self.bots:
                    continue
                new.members[user_id] = Member(user_id, member.status, dict(member.rights),
                                              member.until_date, member.is_member, member.custom_title,
                                              member.is_anonymous, member.joined_at)  # fmt: skip
            self._service_message(old, actor_user, {"migrate_to_chat_id": new.id})
            old.upgraded_to = new.id
            old.join_requests.clear()
            for user_id, member in old.members.items():
                bot = self.bots.get(user_id)
                if bot is None:
                    continue
                moved = Member(user_id, member.status, dict(member.rights), member.until_date, member.is_member,
                               joined_at=now)  # fmt: skip
                new.members[user_id] = moved
                if moved.present:
                    self._emit_my_chat_member(new, bot, objects.left_member(user_id), moved, actor_user.id)
            self._service_message(
                new,
                objects.GROUP_ANONYMOUS_BOT,
                {"migrate_from_chat_id": old.id},
                sender_chat=self.chat_json(new),
            )
            return new

    # --- user <-> bot relations --------------------------------------------------------------

    def set_blocked(self, user_id: int, bot_ref: Any, blocked: bool) -> None:
        with self.lock:
            user = self.user(user_id)
            bot = self.resolve_bot(bot_ref)
            chat = self.private_chat(bot, user)
            old = Member(bot.id, "kicked" if bot.id in user.blocked_bots else "member")
            if blocked:
                user.blocked_bots.add(bot.id)
            else:
                user.blocked_bots.discard(bot.id)
            new = Member(bot.id, "kicked" if blocked else "member")
            if old.status != new.status:
                self._emit_my_chat_member(chat, bot, old, new, user.id)

    # --- update queueing ---------------------------------------------------------------------

    def _bots_present(self, chat: Chat) -> list[Bot]:
        return [bot for bot in self.bots.values() if chat.members.get(bot.id) and chat.members[bot.id].present]

    def _can(self, chat: Chat, user_id: int, right: str) -> bool:
        member = chat.members.get(user_id)
        if member is None:
            return False
        if member.status == "creator":
            return True
        return member.status == "administrator" and bool(member.rights.get(right))

    def _sees_message(self, chat: Chat, bot: Bot, data: JSON) -> bool:
        """Privacy mode: admins and bots with privacy off see all; others see commands, mentions, replies."""
        member = chat.members.get(bot.id)
        if member is None or not member.present:
            return False
        if bot.can_read_all_group_messages or member.status in ("creator", "administrator"):
            return True
        text = str(data.get("text") or data.get("caption") or "")
        if text.startswith("/"):
            command = text.split()[0]
            return "@" not in command or command.split("@", 1)[1].lower() == bot.username.lower()
        if bot.username and f"@{bot.username}".lower() in text.lower():
            return True
        reply = data.get("reply_to_message") or {}
        return bool(reply.get("from", {}).get("id") == bot.id)

    def _emit_my_chat_member(self, chat: Chat, bot: Bot, old: Member, new: Member, actor_id: int | None) -> None:
        payload = self._member_update_payload(chat, bot.id, old, new, actor_id)
        self._emit("my_chat_member", payload, [bot], f"chat:{chat.id}")

    def _emit_chat_member(self, chat: Chat, user_id: int, old: Member, new: Member, actor_id: int,
                          via_join_request: bool, invite_link: JSON | None) -> None:  # fmt: skip
        if chat.type == "private":
            return
        recipients = [
            bot for bot in self._bots_present(chat)
            if bot.id != user_id and chat.members[bot.id].status in ("creator", "administrator")
        ]  # fmt: skip
        if not recipients:
            return
        payload = self._member_update_payload(chat, user_id, old, new, actor_id)
        if invite_link:
            payload["invite_link"] = invite_link
        if via_join_request:
            payload["via_join_request"] = True
        self._emit("chat_member", payload, recipients, f"user:{user_id}")

    def _member_update_payload(self, chat: Chat, user_id: int, old: Member, new: Member,
                               actor_id: int | None) -> JSON:  # fmt: skip
        user = self.users[user_id]
        actor = self.users.get(actor_id if actor_id is not None else user_id, user)
        return {
            "chat": self.chat_json(chat),
            "from": objects.user_json(actor),
            "date": self.now(),
            "old_chat_member": objects.member_json(chat, old, user),
            "new_chat_member": objects.member_json(chat, new, user),
        }

    def _emit(self, kind: str, payload: JSON, bots: Iterable[Bot], queue_key: str) -> None:
        created = self.clock()
        for bot in bots:
            allowed = bot.allowed_updates
            if allowed:
                if kind not in allowed:
                    continue
            elif kind in NOT_DEFAULT_UPDATES:
                continue
            update_id = bot.next_update_id
            bot.next_update_id += 1
            update = {"update_id": update_id, kind: payload}
            body = json.dumps(update, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            bot.pending.append(PendingUpdate(update_id, kind, update, body, queue_key, created))
            self.notify(bot.id)

    def pending_updates(self, bot: Bot) -> list[JSON]:
        with self.lock:
            return [p.payload for p in bot.pending]

    # --- files -------------------------------------------------------------------------------

    def new_file_ids(self) -> tuple[str, str]:
        with self.lock:
            self._file_seq += 1
            seq = self._file_seq
        unique = f"AQAD{seq:06d}{secrets.token_hex(4)}"
        return f"AgACAgIAAxkBAAI{seq:06d}{secrets.token_urlsafe(24)}", unique

    # --- reset -------------------------------------------------------------------------------

    def reset(self, *, keep_bots: bool = True, clear_webhooks: bool = False) -> None:
        """Forget chats, users, messages, calls, faults and queued updates (bots and, unless
        `clear_webhooks`, their webhooks stay)."""
        with self.lock:
            self.chats.clear()
            self.private_chats.clear()
            self.messages.clear()
            self.photos.clear()
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
            self.flood.reset()
            self.faults.clear()
            self.calls.clear()
            for bot_id in list(self.bots):
                self.notify(bot_id)


_ADMIN_DEFAULT = {name: name in ("can_manage_chat", "can_delete_messages", "can_restrict_members",
                                 "can_invite_users", "can_pin_messages", "can_manage_video_chats")
                  for name in ADMIN_RIGHTS}  # fmt: skip


def _member_spec(spec: Any) -> tuple[Any, str, dict[str, bool] | None]:
    if isinstance(spec, dict) and ("user" in spec or "user_id" in spec or "status" in spec):
        user = spec.get("user", spec.get("user_id"))
        return user, spec.get("status", "member"), spec.get("rights")
    return spec, "member", None


def _make_member(user_id: int, status: str, rights: dict[str, bool] | None, now: int) -> Member:
    if status not in MEMBER_STATUSES:
        raise SimError(f"status must be one of {', '.join(MEMBER_STATUSES)}")
    flags = dict(rights or {})
    if status == "administrator":
        flags = {name: bool(flags.get(name, False)) for name in ADMIN_RIGHTS}
        if any(flags.values()):
            flags["can_manage_chat"] = True  # Telegram: every administrator can manage the chat
    elif status == "restricted":
        flags = {name: bool(flags.get(name, False)) for name in PERMISSIONS}
    else:
        flags = {}
    return Member(user_id, status, flags, joined_at=now if status != "left" else 0)


def _token_secret() -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
    return "AA" + "".join(secrets.choice(alphabet) for _ in range(33))
