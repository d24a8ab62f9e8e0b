"""Async Telegram Bot API client (httpx) with typed errors and token-safe logging.

One client per bot token. Whether it talks to api.telegram.org or the simulator is decided only by
`api_base` (TELEGRAM_API_BASE): this module never knows which.

The token is part of every request URL, and httpx logs request URLs (logger "httpx", INFO) and puts
them into exception texts. So: a redacting filter is installed on the httpx/httpcore loggers when this
module is imported, httpx exceptions are re-raised as our own with a redacted message and no chained
cause, and the client's repr shows only the bot id.

Errors: see `workers.telegram_errors` (re-exported here).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict, cast

import httpx

from tgms_tui.backend.config import load_settings
from workers.metrics import METRICS
from workers.telegram_errors import (
    BadRequest,
    CannotRestrictAdmin,
    ChatAdminRequired,
    ChatMigrated,
    ChatNotFound,
    ChatTypeUnsupported,
    Conflict,
    ContentError,
    EntityParseError,
    Forbidden,
    ForbiddenKind,
    HideRequesterMissing,
    InvalidResponse,
    MessageTooLong,
    MethodNotFound,
    NetworkError,
    RetryAfter,
    ServerError,
    StarBalanceTooLow,
    TelegramError,
    TimedOut,
    Unauthorized,
    UserAlreadyParticipant,
    UserNotFound,
    error_from_response,
    redact,
    register_secret,
)

if TYPE_CHECKING:
    from workers.rate_limit import RateLimiter

__all__ = [
    "BadRequest",
    "CannotRestrictAdmin",
    "Chat",
    "ChatAdminRequired",
    "ChatMember",
    "ChatMigrated",
    "ChatNotFound",
    "ChatTypeUnsupported",
    "Conflict",
    "ContentError",
    "EntityParseError",
    "Forbidden",
    "ForbiddenKind",
    "HideRequesterMissing",
    "InvalidResponse",
    "Message",
    "MessageTooLong",
    "MethodNotFound",
    "NetworkError",
    "RetryAfter",
    "ServerError",
    "StarBalanceTooLow",
    "TelegramClient",
    "TelegramError",
    "TimedOut",
    "Unauthorized",
    "User",
    "UserAlreadyParticipant",
    "UserNotFound",
    "WebhookInfo",
    "bot_id_of",
    "install_log_redaction",
    "redact",
]

log = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://api.telegram.org"
# sendPhoto by URL makes Telegram download the picture, so reads get a generous limit.
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=30.0, write=30.0, pool=10.0)

# Methods that post into a chat: these take tokens from the shared rate limiter when one is given.
RATE_LIMITED_METHODS = frozenset(
    m.lower() for m in ("sendMessage", "sendPhoto", "sendDocument", "sendMediaGroup", "copyMessage", "forwardMessage")
)


# ------------------------------------------------------------------ result shapes (the fields TGMS reads)


class User(TypedDict):
    id: int
    is_bot: bool
    first_name: str
    username: NotRequired[str]
    can_join_groups: NotRequired[bool]
    can_read_all_group_messages: NotRequired[bool]


class Chat(TypedDict):
    id: int
    type: str
    title: NotRequired[str]
    username: NotRequired[str]


class Message(TypedDict):
    message_id: int
    date: int
    chat: Chat
    text: NotRequired[str]
    caption: NotRequired[str]


class ChatMember(TypedDict):
    status: str
    user: User
    can_invite_users: NotRequired[bool]
    can_restrict_members: NotRequired[bool]
    can_post_messages: NotRequired[bool]
    can_send_messages: NotRequired[bool]
    until_date: NotRequired[int]


class WebhookInfo(TypedDict):
    url: str
    has_custom_certificate: bool
    pending_update_count: int
    last_error_date: NotRequired[int]
    last_error_message: NotRequired[str]
    max_connections: NotRequired[int]
    allowed_updates: NotRequired[list[str]]


# ------------------------------------------------------------------ token hygiene


class _RedactingFilter(logging.Filter):
    """Rewrites records of HTTP libraries so no bot token reaches any handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not hide the record
            message = str(record.msg)
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


_HTTP_LOGGERS = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)
_redaction_filter = _RedactingFilter()


def install_log_redaction() -> None:
    """Attach the redacting filter to httpx's loggers (logger filters are not inherited by children,
    hence each name). Idempotent; runs on import."""
    for name in _HTTP_LOGGERS:
        logger = logging.getLogger(name)
        if _redaction_filter not in logger.filters:
            logger.addFilter(_redaction_filter)


install_log_redaction()


class _Secret:
    """Holds the token so that repr(), vars() dumps and debuggers show no secret."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__


def bot_id_of(token: str) -> int | None:
    """The bot's numeric id: the public part of its token before the colon."""
    head, sep, _ = token.partition(":")
    return int(head) if sep and head.isdigit() else None


# ------------------------------------------------------------------ client


class TelegramClient:
    """Bot API client for one bot.

    `limiter` (a `workers.rate_limit.RateLimiter`), when given, is consulted before every call that
    posts into a chat, and a 429 pauses this bot in it for `retry_after` (the whole bot, as PTB's
    AIORateLimiter does: Telegram does not say which of its limits was hit). The RetryAfter is still
    raised, so the caller reschedules its job.
    """

    def __init__(
        self,
        token: str,
        *,
        api_base: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        http_client: httpx.AsyncClient | None = None,
        limiter: RateLimiter | None = None,
        direct: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`direct`: the transport under `http_client` for the Bot API's URL, to send JSON calls to
        without the client's per-request layers (URL parsing, cookies, auth and redirect handling:
        a tenth of a TGMS worker's CPU per approval; the Bot API sets no cookie and never redirects).
        Uploads still go through `http_client`."""
        if not token:
            raise ValueError("a bot token is required")
        register_secret(token)
        self._token = _Secret(token)
        if api_base is None:
            api_base = load_settings().telegram_api_base
        self.api_base = api_base.rstrip("/")
        self.bot_id = bot_id_of(token)
        self.bot_key = str(self.bot_id) if self.bot_id is not None else "unknown"
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._own_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=self._timeout)
        self.limiter = limiter
        self._direct = direct
        self._urls: dict[str, httpx.URL] = {}  # per method, for the direct path

    def __repr__(self) -> str:
        return f"TelegramClient(bot_id={self.bot_id!r}, api_base={self.api_base!r})"

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def __aenter__(self) -> TelegramClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -------------------------------------------------------------- transport

    async def call(self, method: str, /, **params: Any) -> Any:
        """Call any Bot API method with JSON parameters; None values are left out."""
        return await self.request(method, params)

    async def request(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        files: Mapping[str, tuple[str, bytes]] | None = None,
        timeout: float | httpx.Timeout | None = None,
    ) -> Any:
        """One Bot API call: returns `result` or raises a `TelegramError` subclass."""
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        chat_id = clean.get("chat_id")
        limited = self.limiter is not None and method.lower() in RATE_LIMITED_METHODS
        if limited:
            assert self.limiter is not None
            await self.limiter.acquire(self.bot_key, chat_id if isinstance(chat_id, int) else None)
        try:
            return await self._send(method, clean, files, timeout, chat_id)
        except RetryAfter as exc:
            if self.limiter is not None:
                await self.limiter.pause(self.bot_key, exc.retry_after)
            raise

    async def _send(
        self,
        method: str,
        params: dict[str, Any],
        files: Mapping[str, tuple[str, bytes]] | None,
        timeout: float | httpx.Timeout | None,
        chat_id: Any,
    ) -> Any:
        started = time.monotonic()
        failure: TelegramError | None = None
        try:
            if self._direct is not None and not files:
                response = await self._post_json(self._direct, method, params, timeout)
            else:
                response = await self._post_with_client(method, params, files, timeout)
        except httpx.HTTPError as exc:
            # Built here, raised below: outside the except block the httpx exception (whose text
            # and .request carry the URL) is neither __cause__ nor __context__.
            failure = _transport_error(exc, method, chat_id)
        if failure is not None:
            log.debug("telegram %s failed: %s", method, failure)
            METRICS.telegram_call(_method_label(method), type(failure).__name__, time.monotonic() - started)
            raise failure
        elapsed_ms = (time.monotonic() - started) * 1000
        result_or_error = _parse(response, method, chat_id)
        outcome = type(result_or_error).__name__ if isinstance(result_or_error, TelegramError) else "ok"
        METRICS.telegram_call(_method_label(method), outcome, elapsed_ms / 1000)
        if isinstance(result_or_error, TelegramError):
            log.debug(
                "telegram %s -> %s %s (%.0f ms)",
                method,
                response.status_code,
                result_or_error.description,
                elapsed_ms,
            )
            raise result_or_error
        log.debug("telegram %s -> ok (%.0f ms)", method, elapsed_ms)
        return result_or_error.value

    async def _post_with_client(
        self,
        method: str,
        params: dict[str, Any],
        files: Mapping[str, tuple[str, bytes]] | None,
        timeout: float | httpx.Timeout | None,
    ) -> httpx.Response:
        """The call through `http_client`: uploads (multipart), and JSON calls without a direct transport."""
        kwargs: dict[str, Any] = {}
        if files:
            kwargs["data"] = {k: _form_value(v) for k, v in params.items()}
            kwargs["files"] = dict(files)
        else:
            kwargs["json"] = params
        if timeout is not None:
            kwargs["timeout"] = timeout
        return await self._http.post(f"{self.api_base}/bot{self._token.reveal()}/{method}", **kwargs)

    async def _post_json(
        self,
        transport: httpx.AsyncBaseTransport,
        method: str,
        params: dict[str, Any],
        timeout: float | httpx.Timeout | None,
    ) -> httpx.Response:
        """The request `httpx.AsyncClient.post(url, json=params)` would send, straight to `transport`."""
        url = self._urls.get(method)
        if url is None:
            url = self._urls[method] = httpx.URL(f"{self.api_base}/bot{self._token.reveal()}/{method}")
        body = json.dumps(params, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        limits = self._timeout if timeout is None else httpx.Timeout(timeout)
        request = httpx.Request(
            "POST", url, headers=_JSON_HEADERS, content=body, extensions={"timeout": limits.as_dict()}
        )
        return await transport.handle_async_request(request)

    # -------------------------------------------------------------- typed methods

    async def get_me(self) -> User:
        return cast(User, await self.call("getMe"))

    async def send_message(
        self,
        chat_id: int | str,
        text: str,
        *,
        parse_mode: str | None = None,
        disable_web_page_preview: bool | None = None,
        disable_notification: bool | None = None,
        reply_markup: Mapping[str, Any] | None = None,
        **extra: Any,
    ) -> Message:
        params: dict[str, Any] = {
            "chat_id": chat_id,
            "text": text,
            "parse_mode": parse_mode,
            "disable_notification": disable_notification,
            "reply_markup": reply_markup,
            **extra,
        }
        if disable_web_page_preview is not None:
            params["link_preview_options"] = {"is_disabled": disable_web_page_preview}
        return cast(Message, await self.request("sendMessage", params))

    async def send_photo(
        self,
        chat_id: int | str,
        photo: str | bytes,
        *,
        caption: str | None = None,
        parse_mode: str | None = None,
        disable_notification: bool | None = None,
        filename: str = "photo.jpg",
        **extra: Any,
    ) -> Message:
        """`photo` is a URL or file_id (Telegram fetches it) or the image bytes (uploaded)."""
        params: dict[str, Any] = {
            "chat_id": chat_id,
            "caption": caption,
            "parse_mode": parse_mode,
            "disable_notification": disable_notification,
            **extra,
        }
        if isinstance(photo, bytes):
            return cast(Message, await self.request("sendPhoto", params, files={"photo": (filename, photo)}))
        params["photo"] = photo
        return cast(Message, await self.request("sendPhoto", params))

    async def approve_chat_join_request(self, chat_id: int | str, user_id: int) -> bool:
        return bool(await self.call("approveChatJoinRequest", chat_id=chat_id, user_id=user_id))

    async def decline_chat_join_request(self, chat_id: int | str, user_id: int) -> bool:
        return bool(await self.call("declineChatJoinRequest", chat_id=chat_id, user_id=user_id))

    async def get_chat(self, chat_id: int | str) -> Chat:
        return cast(Chat, await self.call("getChat", chat_id=chat_id))

    async def get_chat_member_count(self, chat_id: int | str) -> int:
        return int(await self.call("getChatMemberCount", chat_id=chat_id))

    async def get_chat_member(self, chat_id: int | str, user_id: int) -> ChatMember:
        return cast(ChatMember, await self.call("getChatMember", chat_id=chat_id, user_id=user_id))

    async def get_chat_administrators(self, chat_id: int | str) -> list[ChatMember]:
        return cast(list[ChatMember], await self.call("getChatAdministrators", chat_id=chat_id))

    async def ban_chat_member(
        self,
        chat_id: int | str,
        user_id: int,
        *,
        until_date: int | None = None,
        revoke_messages: bool | None = None,
    ) -> bool:
        return bool(
            await self.call(
                "banChatMember",
                chat_id=chat_id,
                user_id=user_id,
                until_date=until_date,
                revoke_messages=revoke_messages,
            )
        )

    async def unban_chat_member(self, chat_id: int | str, user_id: int, *, only_if_banned: bool | None = None) -> bool:
        return bool(await self.call("unbanChatMember", chat_id=chat_id, user_id=user_id, only_if_banned=only_if_banned))

    async def leave_chat(self, chat_id: int | str) -> bool:
        return bool(await self.call("leaveChat", chat_id=chat_id))

    async def set_webhook(
        self,
        url: str,
        *,
        secret_token: str | None = None,
        allowed_updates: Sequence[str] | None = None,
        drop_pending_updates: bool | None = None,
        max_connections: int | None = None,
    ) -> bool:
        if secret_token:
            register_secret(secret_token)
        return bool(
            await self.call(
                "setWebhook",
                url=url,
                secret_token=secret_token,
                allowed_updates=list(allowed_updates) if allowed_updates is not None else None,
                drop_pending_updates=drop_pending_updates,
                max_connections=max_connections,
            )
        )

    async def delete_webhook(self, *, drop_pending_updates: bool | None = None) -> bool:
        return bool(await self.call("deleteWebhook", drop_pending_updates=drop_pending_updates))

    async def get_webhook_info(self) -> WebhookInfo:
        return cast(WebhookInfo, await self.call("getWebhookInfo"))


# ------------------------------------------------------------------ response handling


class _Ok:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _method_label(method: str) -> str:
    """A Bot API method name as a metrics label: the code's own names; anything odd is "other"."""
    return method if method.isascii() and method.isalnum() and len(method) <= 40 else "other"


def _form_value(value: Any) -> str:
    # Multipart fields are strings; Telegram expects objects and arrays JSON-serialized there.
    if isinstance(value, str):
        return value
    return json.dumps(value)


# What httpx's client sends with a JSON body (its User-Agent, which the Bot API ignores, left out).
_JSON_HEADERS = {"Accept": "*/*", "Content-Type": "application/json"}


def _parse(response: httpx.Response, method: str, chat_id: Any) -> _Ok | TelegramError:
    status = response.status_code
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict) or "ok" not in data:
        # Not the Bot API answering: a proxy/gateway page, or garbage.
        if status >= 500:
            return ServerError(
                f"HTTP {status} without a Bot API answer",
                error_code=status,
                method=method,
                chat_id=chat_id,
                maybe_delivered=True,
            )
        if status < 300:
            return InvalidResponse(
                "answer is not a Bot API envelope", method=method, chat_id=chat_id, maybe_delivered=True
            )
        return error_from_response(status, f"HTTP {status}", None, method=method, chat_id=chat_id)
    if data["ok"] is True:
        if "result" not in data:
            return InvalidResponse("ok answer without result", method=method, maybe_delivered=True)
        return _Ok(data["result"])
    # Like PTB we trust the HTTP status; error_code only if the status says nothing.
    code = status if status >= 400 else int(data.get("error_code") or 400)
    description = str(data.get("description") or f"HTTP {code}")
    parameters = data.get("parameters") if isinstance(data.get("parameters"), dict) else None
    return error_from_response(code, description, parameters, method=method, chat_id=chat_id)


def _transport_error(exc: httpx.HTTPError, method: str, chat_id: Any) -> TelegramError:
    detail = redact(str(exc)) or type(exc).__name__
    text = f"{type(exc).__name__}: {detail}"
    # Whether Telegram may have acted on the request: only failures before the request was fully
    # written are safe to resend.
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout | httpx.WriteTimeout):
        return TimedOut(text, method=method, chat_id=chat_id, maybe_delivered=False)
    if isinstance(exc, httpx.TimeoutException):
        return TimedOut(text, method=method, chat_id=chat_id, maybe_delivered=True)
    if isinstance(exc, httpx.ConnectError | httpx.WriteError | httpx.UnsupportedProtocol):
        return NetworkError(text, method=method, chat_id=chat_id, maybe_delivered=False)
    return NetworkError(text, method=method, chat_id=chat_id, maybe_delivered=True)
