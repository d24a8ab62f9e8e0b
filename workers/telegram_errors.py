"""Typed Telegram Bot API errors, chosen the way python-telegram-bot and aiogram choose them.

The exception class comes from the HTTP status (Telegram sets status = error_code) and from
`parameters` (`migrate_to_chat_id`, `retry_after`); the description only refines a status into a
subclass handlers can catch (`ChatNotFound`, `UserAlreadyParticipant`, ...). Handlers decide policy
from three attributes rather than from strings:

- `is_content_error`: the message itself is wrong (bad Markdown, too long, bad photo URL). The same
  text would fail in every group, so it must never count against a group.
- `retryable`: trying the same call later may succeed (429, 5xx, network).
- `maybe_delivered`: the request may have reached Telegram and taken effect although no answer
  arrived. A broadcast marks such a send ambiguous instead of resending it.

Every text stored here went through `redact()`: the bot token is part of the request URL and must
never leak through an exception message or repr.
"""

from __future__ import annotations

import enum
import re
from typing import Any, ClassVar

from tgms_tui.backend.redaction import redact as _redact_known
from tgms_tui.backend.redaction import register_secrets

# In a URL path `bot<digits>:<anything>` is a token whatever its length (the shared pattern wants
# 20+ secret characters to stay clear of look-alikes in free text); `%3A` covers an encoded colon.
_URL_TOKEN_RE = re.compile(r"bot(\d+)(?::|%3[Aa])[A-Za-z0-9_-]+")


def register_secret(secret: str) -> None:
    """Remember a secret (a bot token, a webhook secret) so that `redact()` removes it anywhere."""
    register_secrets([secret, secret.replace(":", "%3A")])


def redact(text: str) -> str:
    """`text` without bot tokens (shown as `bot<id>:***` / `<id>:***`) or registered secrets.

    Extends `tgms_tui.backend.redaction.redact` (the process-wide one) with the URL form above.
    """
    if not text:
        return text
    return _redact_known(_URL_TOKEN_RE.sub(lambda m: f"bot{m.group(1)}:***", text))


class ForbiddenKind(enum.StrEnum):
    """Why Telegram refused: decides whether the group is gone for good or the user is."""

    BOT_KICKED = "bot_kicked"
    NOT_MEMBER = "not_member"
    CHAT_DELETED = "chat_deleted"
    BLOCKED = "blocked"
    USER_DEACTIVATED = "user_deactivated"
    OTHER = "other"


class TelegramError(Exception):
    """Any failed Bot API call. `str()` is Telegram's description (redacted)."""

    is_content_error: ClassVar[bool] = False
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        description: str,
        *,
        error_code: int | None = None,
        method: str | None = None,
        chat_id: int | str | None = None,
        maybe_delivered: bool = False,
    ) -> None:
        self.description = redact(description)
        super().__init__(self.description)
        self.error_code = error_code
        self.method = method
        self.chat_id = chat_id
        self.maybe_delivered = maybe_delivered
        self.code = mtproto_code(self.description)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(method={self.method!r}, error_code={self.error_code!r}, "
            f"description={self.description!r})"
        )


class Unauthorized(TelegramError):
    """401: the token is wrong or revoked. Nothing works until the configuration is fixed."""


class MethodNotFound(TelegramError):
    """404 "Not Found: method not found" (a typo in a method name, or an API too old)."""


class Conflict(TelegramError):
    """409, e.g. getUpdates while a webhook is set."""


class Forbidden(TelegramError):
    """403: the bot may not act in this chat any more; `kind` says why."""

    def __init__(self, description: str, **kw: Any) -> None:
        super().__init__(description, **kw)
        self.kind = forbidden_kind(self.description)


class BadRequest(TelegramError):
    """400 not covered by a subclass."""


class ChatNotFound(BadRequest):
    """The chat id is unknown to the bot (never joined, or a wrong id)."""


class UserNotFound(BadRequest):
    """The user id is unknown or invalid in this chat."""


class UserAlreadyParticipant(BadRequest):
    """USER_ALREADY_PARTICIPANT: approving someone who is already a member; the goal is met."""


class HideRequesterMissing(BadRequest):
    """HIDE_REQUESTER_MISSING: no pending join request (already handled elsewhere, or expired)."""


class StarBalanceTooLow(BadRequest):
    """BALANCE_TOO_LOW: a paid send (allow_paid_broadcast) the bot's Telegram Stars cannot pay for.
    Every further paid send fails the same way until the balance is topped up; no group is at fault."""


class ChatAdminRequired(BadRequest):
    """The bot lacks an admin right: CHAT_ADMIN_REQUIRED or "not enough rights to ..."."""


class CannotRestrictAdmin(BadRequest):
    """Ban/unban of the chat owner or an administrator, which Telegram refuses."""


class ChatTypeUnsupported(BadRequest):
    """The method does not apply to this chat type (e.g. unbanChatMember in a basic group)."""


class ContentError(BadRequest):
    """The message content is invalid; resending it anywhere fails the same way."""

    is_content_error: ClassVar[bool] = True


class EntityParseError(ContentError):
    """ "can't parse entities": broken Markdown/HTML in the text or caption."""


class MessageTooLong(ContentError):
    """Text or caption over Telegram's length limit."""


class RetryAfter(TelegramError):
    """429 flood control: wait `retry_after` seconds. Never a failure of the chat."""

    retryable: ClassVar[bool] = True

    def __init__(self, description: str, *, retry_after: float, **kw: Any) -> None:
        super().__init__(description, **kw)
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"RetryAfter(method={self.method!r}, retry_after={self.retry_after!r})"


class ChatMigrated(TelegramError):
    """The basic group became a supergroup: repeat the call with `new_chat_id`. Never a failure."""

    def __init__(self, description: str, *, new_chat_id: int, **kw: Any) -> None:
        super().__init__(description, **kw)
        self.new_chat_id = new_chat_id

    def __repr__(self) -> str:
        return f"ChatMigrated(method={self.method!r}, chat_id={self.chat_id!r}, new_chat_id={self.new_chat_id!r})"


class ServerError(TelegramError):
    """5xx. `maybe_delivered` is set when the answer did not come from the Bot API itself (a
    gateway error): the request may have been processed behind it."""

    retryable: ClassVar[bool] = True


class NetworkError(TelegramError):
    """No usable answer. `maybe_delivered` is False only when the request surely never left
    (connection refused, connect timeout, pool exhausted)."""

    retryable: ClassVar[bool] = True


class TimedOut(NetworkError):
    """A timeout; `maybe_delivered` is True when it struck after the request was sent."""


class InvalidResponse(NetworkError):
    """The answer was not a Bot API envelope (not JSON, or JSON of the wrong shape)."""


# ------------------------------------------------------------------ classification

_MTPROTO_RE = re.compile(r"(?:^|:\s*)([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)\b")
_PREFIXES = ("bad request: ", "forbidden: ", "unauthorized: ", "internal server error: ", "conflict: ")


def mtproto_code(description: str) -> str | None:
    """The all-caps MTProto code Telegram passes through (`USER_ALREADY_PARTICIPANT`), if any."""
    m = _MTPROTO_RE.search(description)
    return m.group(1) if m else None


def _reason(description: str) -> str:
    text = description.strip().lower()
    for prefix in _PREFIXES:
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


def forbidden_kind(description: str) -> ForbiddenKind:
    text = _reason(description)
    if "bot was kicked" in text:
        return ForbiddenKind.BOT_KICKED
    if "bot is not a member" in text:
        return ForbiddenKind.NOT_MEMBER
    if "chat was deleted" in text or "group is deactivated" in text:
        return ForbiddenKind.CHAT_DELETED
    if "blocked by the user" in text:
        return ForbiddenKind.BLOCKED
    if "user is deactivated" in text:
        return ForbiddenKind.USER_DEACTIVATED
    return ForbiddenKind.OTHER


# (substring of the lowercased reason, class), first match wins. Matching on substrings rather than
# whole texts keeps older and newer Telegram wordings working ("can't parse entities: <detail>").
_BAD_REQUEST_RULES: tuple[tuple[str, type[BadRequest]], ...] = (
    ("user_already_participant", UserAlreadyParticipant),
    ("hide_requester_missing", HideRequesterMissing),
    ("balance_too_low", StarBalanceTooLow),
    ("chat not found", ChatNotFound),
    ("peer_id_invalid", ChatNotFound),
    ("channel_invalid", ChatNotFound),
    ("chat_admin_required", ChatAdminRequired),
    ("not enough rights", ChatAdminRequired),
    ("chat_write_forbidden", ChatAdminRequired),
    ("have no rights to send", ChatAdminRequired),
    ("can't remove chat owner", CannotRestrictAdmin),
    ("user is an administrator", CannotRestrictAdmin),
    ("user_admin_invalid", CannotRestrictAdmin),
    ("method is available for supergroup", ChatTypeUnsupported),
    ("method is available only for supergroups", ChatTypeUnsupported),
    ("user not found", UserNotFound),
    ("user_id_invalid", UserNotFound),
    ("participant_id_invalid", UserNotFound),
    ("can't parse entities", EntityParseError),
    ("message is too long", MessageTooLong),
    ("caption is too long", MessageTooLong),
    ("text is too long", MessageTooLong),
    ("message text is empty", ContentError),
    ("unsupported parse_mode", ContentError),
    ("failed to get http url content", ContentError),
    ("wrong type of the web page content", ContentError),
    ("wrong http url", ContentError),
    ("wrong file identifier", ContentError),
    ("wrong remote file identifier", ContentError),
    ("photo_invalid_dimensions", ContentError),
    ("image_process_failed", ContentError),
    ("photo_invalid", ContentError),
)

_RETRY_AFTER_TEXT_RE = re.compile(r"retry after (\d+(?:\.\d+)?)", re.IGNORECASE)


def error_from_response(
    status: int,
    description: str,
    parameters: dict[str, Any] | None,
    *,
    method: str | None = None,
    chat_id: int | str | None = None,
) -> TelegramError:
    """The exception for an `ok: false` answer, chosen by HTTP status and `parameters` like PTB."""
    params = parameters or {}
    kw: dict[str, Any] = {"error_code": status, "method": method, "chat_id": chat_id}
    migrate_to = params.get("migrate_to_chat_id")
    if isinstance(migrate_to, int):
        return ChatMigrated(description, new_chat_id=migrate_to, **kw)
    retry_after = params.get("retry_after")
    if isinstance(retry_after, int | float):
        return RetryAfter(description, retry_after=float(retry_after), **kw)
    if status == 429:
        # A 429 without parameters still means "slow down"; the text usually has the seconds.
        m = _RETRY_AFTER_TEXT_RE.search(description)
        return RetryAfter(description, retry_after=float(m.group(1)) if m else 1.0, **kw)
    if status == 401:
        return Unauthorized(description, **kw)
    if status == 404:
        return MethodNotFound(description, **kw)
    if status == 403:
        return Forbidden(description, **kw)
    if status == 409:
        return Conflict(description, **kw)
    if status == 413:
        return ContentError(description, **kw)
    if status >= 500:
        return ServerError(description, **kw)
    if status == 400:
        reason = _reason(description)
        if "group is deactivated" in reason:
            # Older wording of "the group chat was deleted" (sent as 400): same meaning for handlers.
            return Forbidden(description, **kw)
        for needle, cls in _BAD_REQUEST_RULES:
            if needle in reason:
                return cls(description, **kw)
        return BadRequest(description, **kw)
    return TelegramError(description, **kw)
