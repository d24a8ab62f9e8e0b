"""`SimState`: the simulated Telegram, i.e. the registry plus the events that change it.

Domain operations (a user asks to join, a member leaves, the bot is kicked, a group is upgraded...)
live here because the Bot API methods and the control API both trigger them. Each one queues the
updates Telegram would send, per bot, filtered by that bot's `allowed_updates` and privacy mode, and
wakes listeners (the webhook dispatcher) through `notify`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from typing import Any

from telegram_sim import objects
from telegram_sim.markdown import auto_entities
from telegram_sim.model import (
    ADMIN_RIGHTS,
    DEFAULT_BOT_ADMIN_RIGHTS,
    MEMBER_STATUSES,
    PERMISSIONS,
    Bot,
    CallbackQuery,
    Chat,
    InviteLink,
    JoinRequest,
    Member,
    PendingUpdate,
    User,
    full_permissions,
)
from telegram_sim.registry import JSON, Registry, SimError, token_is_well_formed

__all__ = ["SimError", "SimState", "token_is_well_formed"]

# Telegram's default when allowed_updates is unset or empty.
NOT_DEFAULT_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})


class SimState(Registry):
    """All simulated Telegram state for one simulator instance, and what happens to it."""

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
                   actor: Any = None, via_join_request: bool = False,
                   invite_link: str | None = None) -> Member:  # fmt: skip
        """Add or change a member. `invite_link`: the user joins by themselves through that link
        (a bot-created link that does not create join requests; a banned user cannot)."""
        with self.lock:
            chat = self.chat(chat_id)
            member_user = self.ensure_user(user)
            if status not in MEMBER_STATUSES:
                raise SimError(f"status must be one of {', '.join(MEMBER_STATUSES)}")
            actor_id = self.ensure_user(actor).id if actor is not None else None
            link: JSON | None = None
            if invite_link is not None:
                created = chat.invite_links.get(invite_link)
                if created is None:
                    raise SimError("unknown invite link", 404)
                if created.is_revoked or (created.expire_date and created.expire_date <= self.now()):
                    raise SimError("the invite link is revoked or expired (INVITE_HASH_EXPIRED)", 409)
                if created.creates_join_request:
                    raise SimError("this link creates join requests: use POST /join_requests", 409)
                if self.member_of(chat, member_user.id).status == "kicked":
                    raise SimError("user is banned from this chat", 409)
                link = self.invite_link_json(chat, created, created.creator_id)
            new = _make_member(member_user.id, status, rights, self.now())
            chat.join_requests.pop(member_user.id, None)
            return self.change_member(chat, member_user.id, new, actor_id=actor_id,
                                      via_join_request=via_join_request, invite_link=link)  # fmt: skip

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

    def create_join_request(self, chat_id: int, user: Any, *, bio: str | None = None,
                            invite_link: Any = None) -> JoinRequest:  # fmt: skip
        """A user asks to join: queue chat_join_request for the admin bots allowed to invite users.

        `invite_link`: the URL of a link a bot created (it must create join requests and not be
        revoked or expired), a name (a made-up link of the owner's), a ChatInviteLink object, or true."""
        with self.lock:
            chat = self.chat(chat_id)
            if not chat.active:
                raise SimError("chat is deleted or upgraded", 409)
            requester = self.ensure_user(user)
            standing = self.member_of(chat, requester.id)
            if standing.present:
                raise SimError("user is already a member", 409)
            if standing.status == "kicked":
                raise SimError("user is banned from this chat", 409)
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
            recipients = [bot for bot in self._bots_present(chat) if self._can(chat, bot.id, "can_invite_users")]
            self.requesters_seen.update((bot.id, requester.id) for bot in recipients)
            if not link:
                self._emit("chat_join_request", payload, recipients, f"user:{requester.id}")
                return request
            for bot in recipients:
                view = {**payload, "invite_link": self.link_view(chat, link, bot.id)}
                self._emit("chat_join_request", view, [bot], f"user:{requester.id}")
            return request

    def link_view(self, chat: Chat, link: JSON, viewer_id: int) -> JSON:
        """A ChatInviteLink carried by an update, as the receiving bot sees it (a link created by a
        bot is whole only for that bot, with its current pending request count)."""
        created = chat.invite_links.get(str(link.get("invite_link")))
        if created is None:
            return link
        return self.invite_link_json(chat, created, viewer_id)

    def invite_link_json(self, chat: Chat, link: InviteLink, viewer_id: int) -> JSON:
        pending = sum(
            1 for r in chat.join_requests.values()
            if r.invite_link and r.invite_link.get("invite_link") == link.invite_link
        )  # fmt: skip
        creator = self.users[link.creator_id]
        return objects.invite_link_json(link, creator, viewer_id=viewer_id, pending=pending)

    def press_button(self, user_id: int, chat_id: int, message_id: int, data: str) -> CallbackQuery:
        """A user presses an inline button of a bot's message: queue callback_query for that bot."""
        with self.lock:
            user = self.user(user_id)
            stored = self.find_message(int(chat_id), int(message_id))
            if stored is None or stored.sent_by_bot is None:
                raise SimError("no such message from a bot in that chat", 404)
            if int(chat_id) > 0 and int(chat_id) != user.id:
                raise SimError("a user can only press buttons in their own private chat or a group", 403)
            keyboard = (stored.data.get("reply_markup") or {}).get("inline_keyboard") or []
            if not any(isinstance(b, dict) and b.get("callback_data") == data for row in keyboard for b in row):
                raise SimError("the message has no button with that callback_data")
            bot = self.bots[stored.sent_by_bot]
            query = CallbackQuery(str(self.rng.getrandbits(63)), bot.id, user.id, int(chat_id), int(message_id),
                                  data, self.clock())  # fmt: skip
            self.callback_queries[query.id] = query
            payload: JSON = {
                "id": query.id,
                "from": objects.user_json(user),
                "message": stored.data,
                "chat_instance": str(abs(hash((bot.id, int(chat_id)))) % (1 << 62)),
                "data": data,
            }
            self._emit("callback_query", payload, [bot], f"user:{user.id}")
            return query

    def _invite_link(self, chat: Chat, spec: Any) -> JSON | None:
        if not spec:
            return None
        if isinstance(spec, dict) and "invite_link" in spec:
            return spec
        if isinstance(spec, str) and spec in chat.invite_links:
            created = chat.invite_links[spec]
            if created.is_revoked or (created.expire_date and created.expire_date <= self.now()):
                raise SimError("the invite link is revoked or expired (INVITE_HASH_EXPIRED)", 409)
            if not created.creates_join_request:
                raise SimError("this link does not create join requests: add the member with invite_link", 409)
            return self.invite_link_json(chat, created, created.creator_id)
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

    def create_invite_link(self, chat: Chat, creator_id: int, *, name: str | None, expire_date: int,
                           member_limit: int, creates_join_request: bool) -> InviteLink:  # fmt: skip
        with self.lock:
            while True:
                url = f"https://t.me/+{secrets.token_urlsafe(12)[:16]}"
                if all(url not in c.invite_links for c in self.chats.values()):
                    break
            link = InviteLink(url, creator_id, name or None, expire_date, member_limit, creates_join_request)
            chat.invite_links[url] = link
            return link

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
        if via_join_request:
            payload["via_join_request"] = True
        if not invite_link:
            self._emit("chat_member", payload, recipients, f"user:{user_id}")
            return
        for bot in recipients:
            view = {**payload, "invite_link": self.link_view(chat, invite_link, bot.id)}
            if via_join_request:  # Telegram's field order: invite_link before via_join_request
                view["via_join_request"] = view.pop("via_join_request")
            self._emit("chat_member", view, [bot], f"user:{user_id}")

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
