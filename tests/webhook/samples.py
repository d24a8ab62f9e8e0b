"""Real-shaped Telegram updates (shapes from the Bot API server's JSON output; ids invented)."""

from __future__ import annotations

from typing import Any

GROUP = {"id": -1001234567890, "title": "Growth group", "type": "supergroup"}
BASIC_GROUP = {"id": -4726613835, "title": "Old group", "type": "group", "all_members_are_administrators": True}
ANN = {"id": 42, "is_bot": False, "first_name": "Ann", "username": "ann", "language_code": "en"}
OWNER = {"id": 1, "is_bot": False, "first_name": "Owner"}
BOT = {"id": 7000000001, "is_bot": True, "first_name": "TGMS", "username": "tgms_bot"}


def message(update_id: int) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": 10,
            "from": ANN,
            "chat": GROUP,
            "date": 1760000000,
            "text": "hi all 👋 /start",
            "entities": [{"offset": 10, "length": 6, "type": "bot_command"}],
        },
    }


def private_start(update_id: int) -> dict[str, Any]:
    """/start in a private chat: answered by a job (unlike a message in a group, recorded on intake)."""
    return {
        "update_id": update_id,
        "message": {
            "message_id": 3,
            "from": ANN,
            "chat": {"id": ANN["id"], "first_name": "Ann", "username": "ann", "type": "private"},
            "date": 1760000000,
            "text": "/start",
            "entities": [{"offset": 0, "length": 6, "type": "bot_command"}],
        },
    }


def edited_message(update_id: int) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "edited_message": {
            "message_id": 10,
            "from": ANN,
            "chat": GROUP,
            "date": 1760000000,
            "edit_date": 1760000060,
            "text": "hi all (edited)",
        },
    }


def callback_query(update_id: int) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "callback_query": {
            "id": "4382bfdwdsb323b2d9",
            "from": ANN,
            "chat_instance": "-8841293",
            "data": "phase:monitoring",
            "message": {"message_id": 11, "from": BOT, "chat": GROUP, "date": 1760000001, "text": "Pick a phase"},
        },
    }


def my_chat_member(update_id: int) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "my_chat_member": {
            "chat": GROUP,
            "from": OWNER,
            "date": 1760000002,
            "old_chat_member": {"user": BOT, "status": "member"},
            "new_chat_member": {
                "user": BOT,
                "status": "administrator",
                "can_be_edited": False,
                "can_manage_chat": True,
                "can_invite_users": True,
                "can_restrict_members": True,
                "can_delete_messages": True,
                "is_anonymous": False,
            },
        },
    }


def chat_member(update_id: int) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "chat_member": {
            "chat": GROUP,
            "from": ANN,
            "date": 1760000003,
            "via_join_request": True,
            "old_chat_member": {"user": ANN, "status": "left"},
            "new_chat_member": {"user": ANN, "status": "member"},
        },
    }


def chat_join_request(update_id: int) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "chat_join_request": {
            "chat": GROUP,
            "from": ANN,
            "user_chat_id": 42,
            "date": 1760000004,
            "bio": "hi",
            "invite_link": {
                "invite_link": "https://t.me/+AbCdEfGh",
                "creator": OWNER,
                "creates_join_request": True,
                "is_primary": False,
                "is_revoked": False,
                "name": "ads",
            },
        },
    }


def migrate_to_chat(update_id: int) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": 12,
            "from": OWNER,
            "chat": BASIC_GROUP,
            "date": 1760000005,
            "migrate_to_chat_id": -1009876543210,
        },
    }


def unknown_future_type(update_id: int) -> dict[str, Any]:
    return {"update_id": update_id, "guest_poll_of_the_future": {"id": "x", "question": "?"}}


# builder, update_type, job_type (None: member activity recorded on intake, no job), priority
ROUTING: list[tuple[Any, str, str | None, int]] = [
    (message, "message", None, 0),
    (private_start, "message", "process_telegram_update", 0),
    (edited_message, "edited_message", None, 0),
    (callback_query, "callback_query", "process_telegram_update", 0),
    (my_chat_member, "my_chat_member", "process_telegram_update", 0),
    (chat_member, "chat_member", None, 0),
    (chat_join_request, "chat_join_request", "tgms_process_join_request", -10),
    (migrate_to_chat, "message", "process_telegram_update", 0),
    (unknown_future_type, "guest_poll_of_the_future", "process_telegram_update", 0),
]
