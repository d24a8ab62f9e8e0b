"""Every update kind the simulator produces parses with python-telegram-bot, and the only fields PTB
does not know are the undocumented ones the real Bot API server also sends."""

from __future__ import annotations

from typing import Any

import telegram

from telegram_sim.config import SimConfig
from telegram_sim.state import SimState

# Sent by tdlib/telegram-bot-api although absent from the docs (reference/telegram.md §1.3).
LEGACY_FIELDS = {"new_chat_participant", "new_chat_member", "left_chat_participant",
                 "all_members_are_administrators", "can_manage_voice_chats"}  # fmt: skip


def _unknown_fields(obj: Any, seen: set[int] | None = None) -> set[str]:
    seen = seen if seen is not None else set()
    if id(obj) in seen or not isinstance(obj, telegram.TelegramObject):
        return set()
    seen.add(id(obj))
    found = set(obj.api_kwargs)
    for klass in type(obj).__mro__:
        for name in getattr(klass, "__slots__", ()):
            value = getattr(obj, name, None)
            items = value if isinstance(value, tuple | list) else (value,)
            for item in items:
                found |= _unknown_fields(item, seen)
    return found


def test_every_update_kind_parses_with_ptb() -> None:
    state = SimState(SimConfig(enforce_flood_limits=False), seed=3)
    bot = state.add_bot()
    bot.allowed_updates = ["message", "edited_message", "chat_member", "my_chat_member", "chat_join_request"]
    group = state.create_chat("group", "G", members=[11, 12], owner=10)
    supergroup = state.create_chat("supergroup", "S", members=[21], owner=20)
    request = state.create_join_request(supergroup.id, {"first_name": "Req"}, bio="b", invite_link="ads")
    state.add_member(supergroup.id, request.user_id, via_join_request=True)
    state.post_message(supergroup.id, 21, "/start hi @x #y t.me/z")
    typo = state.post_message(supergroup.id, 21, "typo")
    state.edit_message(supergroup.id, typo["message_id"], "fixed")
    state.remove_member(supergroup.id, 21)
    state.set_title(supergroup.id, "S2")
    state.set_bot_status(group.id, bot.id, action="demote")
    state.upgrade_chat(group.id)
    state.post_message(None, 30, "/start", bot=bot.id)
    state.set_blocked(30, bot.id, True)

    kinds = set()
    for pending in bot.pending:
        update = telegram.Update.de_json(pending.payload, None)
        assert update is not None and update.update_id == pending.update_id
        kind = next(k for k in pending.payload if k != "update_id")
        kinds.add(kind)
        assert getattr(update, kind) is not None
        assert _unknown_fields(update) <= LEGACY_FIELDS, (kind, _unknown_fields(update))
    assert kinds == {"chat_join_request", "message", "edited_message", "chat_member", "my_chat_member"}
    migrations = [p.payload["message"] for p in bot.pending if "migrate_from_chat_id" in p.payload.get("message", {})]
    assert telegram.Message.de_json(migrations[0], None).migrate_from_chat_id == group.id
