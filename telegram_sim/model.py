"""The simulator's world: users, bots, chats, members, join requests, messages, queued updates.

Plain dataclasses, mutated only by `SimState` under its lock. A bot is also a `User`; its standing
in a chat is an ordinary `Member` record, exactly as Telegram models it (the bot's "status and
rights per chat" are the ChatMember Telegram returns for the bot).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ChatType = Literal["private", "group", "supergroup", "channel"]
MemberStatus = Literal["creator", "administrator", "member", "restricted", "left", "kicked"]

MEMBER_STATUSES: tuple[str, ...] = ("creator", "administrator", "member", "restricted", "left", "kicked")

# Administrator rights, in Bot API order (ChatMemberAdministrator / ChatAdministratorRights).
ADMIN_RIGHTS: tuple[str, ...] = (
    "can_manage_chat",
    "can_delete_messages",
    "can_manage_video_chats",
    "can_restrict_members",
    "can_promote_members",
    "can_change_info",
    "can_invite_users",
    "can_post_stories",
    "can_edit_stories",
    "can_delete_stories",
    "can_post_messages",
    "can_edit_messages",
    "can_pin_messages",
    "can_manage_topics",
)
# Rights only channels report (Bot API omits them for groups).
CHANNEL_ONLY_RIGHTS = frozenset({"can_post_messages", "can_edit_messages"})

# ChatPermissions, in Bot API order; also the flags of a restricted member.
PERMISSIONS: tuple[str, ...] = (
    "can_send_messages",
    "can_send_audios",
    "can_send_documents",
    "can_send_photos",
    "can_send_videos",
    "can_send_video_notes",
    "can_send_voice_notes",
    "can_send_polls",
    "can_send_other_messages",
    "can_add_web_page_previews",
    "can_change_info",
    "can_invite_users",
    "can_pin_messages",
    "can_manage_topics",
)

# The rights a ready-made group gives its bots: invite (approve requests), post, ban, delete.
DEFAULT_BOT_ADMIN_RIGHTS: dict[str, bool] = {
    name: name not in {"can_promote_members", "can_post_stories", "can_edit_stories", "can_delete_stories"}
    for name in ADMIN_RIGHTS
}


def full_permissions() -> dict[str, bool]:
    return {name: True for name in PERMISSIONS}


@dataclass
class User:
    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    is_bot: bool = False
    language_code: str | None = None
    deactivated: bool = False
    # Bot ids this user has started (a private chat exists) and bot ids this user blocked.
    started_bots: set[int] = field(default_factory=set)
    blocked_bots: set[int] = field(default_factory=set)


@dataclass
class Member:
    user_id: int
    status: str = "member"
    # Admin rights (administrator) or permission flags (restricted); missing keys mean False.
    rights: dict[str, bool] = field(default_factory=dict)
    until_date: int = 0
    is_member: bool = True  # restricted members only: still in the chat?
    custom_title: str | None = None
    is_anonymous: bool = False
    joined_at: int = 0

    @property
    def present(self) -> bool:
        """Counts towards the member count (Telegram: creator, admins, members, restricted in chat)."""
        if self.status in ("creator", "administrator", "member"):
            return True
        return self.status == "restricted" and self.is_member


# How long a bot may write to a requester through the request's user_chat_id (and only while the
# request is pending): "within 5 minutes", says the Bot API.
USER_CHAT_WINDOW_SECONDS = 300


@dataclass
class JoinRequest:
    chat_id: int
    user_id: int
    date: int
    bio: str | None = None
    invite_link: dict[str, Any] | None = None


@dataclass
class InviteLink:
    """An additional invite link a bot created (createChatInviteLink); the URL is its identity."""

    invite_link: str
    creator_id: int
    name: str | None = None
    expire_date: int = 0
    member_limit: int = 0
    creates_join_request: bool = False
    is_revoked: bool = False


@dataclass
class CallbackQuery:
    """A button press waiting for (or given) its answerCallbackQuery."""

    id: str
    bot_id: int
    user_id: int
    chat_id: int
    message_id: int
    data: str
    at: float
    answered: bool = False
    answer: dict[str, Any] | None = None


@dataclass
class Chat:
    id: int
    type: str
    title: str | None = None
    username: str | None = None
    description: str | None = None
    members: dict[int, Member] = field(default_factory=dict)
    permissions: dict[str, bool] = field(default_factory=full_permissions)
    join_requests: dict[int, JoinRequest] = field(default_factory=dict)
    invite_links: dict[str, InviteLink] = field(default_factory=dict)
    deleted: bool = False
    upgraded_to: int | None = None
    upgraded_from: int | None = None
    next_message_id: int = 1
    created_at: int = 0
    # private chats only: the user on the other side (chat id == user id)
    private_user_id: int | None = None

    @property
    def is_group_like(self) -> bool:
        return self.type in ("group", "supergroup")

    @property
    def member_count(self) -> int:
        return sum(1 for m in self.members.values() if m.present)

    @property
    def active(self) -> bool:
        return not self.deleted and self.upgraded_to is None


@dataclass
class WebhookSettings:
    url: str = ""
    secret_token: str | None = field(default=None, repr=False)
    max_connections: int = 40
    ip_address: str | None = None
    has_custom_certificate: bool = False
    last_error_date: int | None = None
    last_error_message: str | None = None
    set_at: float = 0.0


@dataclass(eq=False)
class PendingUpdate:
    """An update waiting for webhook delivery or getUpdates confirmation (compared by identity)."""

    update_id: int
    kind: str
    payload: dict[str, Any]
    body: bytes
    queue_key: str
    created: float
    attempts: int = 0
    not_before: float = 0.0
    in_flight: bool = False


@dataclass
class Bot:
    user: User
    token: str = field(repr=False)
    can_join_groups: bool = True
    can_read_all_group_messages: bool = False
    supports_inline_queries: bool = False
    webhook: WebhookSettings = field(default_factory=WebhookSettings)
    allowed_updates: list[str] | None = None
    next_update_id: int = 1
    pending: list[PendingUpdate] = field(default_factory=list)
    # getUpdates bookkeeping: bumps when a newer poll supersedes an older one.
    poll_generation: int = 0

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def username(self) -> str:
        return self.user.username or ""


@dataclass
class StoredMessage:
    """A message as the simulator keeps it: its Bot API JSON plus who sent it."""

    chat_id: int
    message_id: int
    data: dict[str, Any]
    sent_by_bot: int | None = None
    at: float = 0.0
    # what the message said before each edit: [{"text" or "caption": ..., "edit_date": ...}]
    history: list[dict[str, Any]] = field(default_factory=list)
    pinned: bool = False
    deleted_at: float | None = None
