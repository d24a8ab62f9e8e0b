"""A small client for the simulator's `/_sim/` control API, sync (`SimControl`) and async
(`AsyncSimControl`), so other tests and tools never hand-build control requests.

Both classes share one set of methods: each builds a request and hands it to `_request`, which the
sync class runs at once and the async class returns as an awaitable. Errors raise
`SimControlError` with the simulator's message. `base_url` is the simulator root
(`http://127.0.0.1:PORT`), the same value used as TELEGRAM_API_BASE.
"""

from __future__ import annotations

from typing import Any

import httpx


class SimControlError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"simulator control API {status}: {message}")
        self.status = status
        self.message = message


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _unwrap(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        raise SimControlError(response.status_code, message)
    return response.json()


class _ControlMethods:
    """The control API as methods; `_request` is supplied by the sync/async subclass."""

    def _request(self, method: str, path: str, *, json: dict[str, Any] | None = None,
                 params: dict[str, Any] | None = None) -> Any:  # fmt: skip
        raise NotImplementedError

    # general
    def health(self) -> Any:
        return self._request("GET", "/_sim/health")

    def config(self) -> Any:
        return self._request("GET", "/_sim/config")

    def set_config(self, **changes: Any) -> Any:
        """e.g. set_config(enforce_flood_limits=False) or set_config(per_group_per_min=5)."""
        return self._request("POST", "/_sim/config", json=changes)

    def set_flood_limits(self, enabled: bool) -> Any:
        return self.set_config(enforce_flood_limits=enabled)

    def reset(self, keep_bots: bool = True, clear_webhooks: bool = False) -> Any:
        body = {"keep_bots": keep_bots, "clear_webhooks": clear_webhooks}
        return self._request("POST", "/_sim/reset", json=body)

    # bots and users
    def bots(self) -> Any:
        return self._request("GET", "/_sim/bots")

    def stars(self, bot_id: int) -> Any:
        """{"balance": Stars, "billed_messages": n}: what paid broadcasts cost the bot so far."""
        return self._request("GET", f"/_sim/bots/{bot_id}/stars")

    def set_stars(self, bot_id: int, balance: float) -> Any:
        return self._request("POST", f"/_sim/bots/{bot_id}/stars", json={"balance": balance})

    def create_bot(self, token: str | None = None, *, username: str | None = None,
                   first_name: str | None = None, can_read_all_group_messages: bool = False) -> Any:  # fmt: skip
        body = _clean({"token": token, "username": username, "first_name": first_name})
        body["can_read_all_group_messages"] = can_read_all_group_messages
        return self._request("POST", "/_sim/bots", json=body)

    def users(self) -> Any:
        return self._request("GET", "/_sim/users")

    def create_user(self, first_name: str | None = None, **fields: Any) -> Any:
        """fields: id, last_name, username, language_code, is_bot."""
        return self._request("POST", "/_sim/users", json=_clean({"first_name": first_name, **fields}))

    def block_bot(self, user_id: int, bot: int | str | None = None) -> Any:
        return self._request("POST", f"/_sim/users/{user_id}/block", json=_clean({"bot": bot}))

    def unblock_bot(self, user_id: int, bot: int | str | None = None) -> Any:
        return self._request("POST", f"/_sim/users/{user_id}/unblock", json=_clean({"bot": bot}))

    def deactivate_user(self, user_id: int) -> Any:
        return self._request("POST", f"/_sim/users/{user_id}/deactivate")

    def press(self, user_id: int, chat_id: int, message_id: int, data: str) -> Any:
        """A user presses an inline button; returns {"callback_query_id": ...} of the update it makes."""
        body = {"chat_id": chat_id, "message_id": message_id, "data": data}
        return self._request("POST", f"/_sim/users/{user_id}/press", json=body)

    def callback_query(self, query_id: str) -> Any:
        """A press and the bot's answer to it (answered, answer.text)."""
        return self._request("GET", f"/_sim/callback_queries/{query_id}")

    # chats
    def chats(self, type: str | None = None) -> Any:
        return self._request("GET", "/_sim/chats", params=_clean({"type": type}))

    def chat(self, chat_id: int) -> Any:
        return self._request("GET", f"/_sim/chats/{chat_id}")

    def create_chat(self, type: str = "supergroup", title: str | None = None, **spec: Any) -> Any:
        """spec: id, username, description, owner, members (count or list), admins, bots, permissions,
        announce. See docs/simulator.md."""
        return self._request("POST", "/_sim/chats", json=_clean({"type": type, "title": title, **spec}))

    def delete_chat(self, chat_id: int) -> Any:
        return self._request("DELETE", f"/_sim/chats/{chat_id}")

    def add_member(self, chat_id: int, user: Any = None, *, status: str = "member",
                   rights: dict[str, bool] | None = None, actor: int | None = None) -> Any:  # fmt: skip
        body = _clean({"user": user, "status": status, "rights": rights, "actor": actor})
        return self._request("POST", f"/_sim/chats/{chat_id}/members", json=body)

    def remove_member(self, chat_id: int, user_id: int, *, kicked: bool = False, actor: int | None = None) -> Any:
        params = _clean({"kicked": "true" if kicked else "false", "actor": actor})
        return self._request("DELETE", f"/_sim/chats/{chat_id}/members/{user_id}", params=params)

    def join_request(self, chat_id: int, user: Any = None, *, bio: str | None = None,
                     invite_link: Any = None) -> Any:  # fmt: skip
        """A user asks to join (`user`: id, {"first_name": ...} spec, or None for a fresh user)."""
        body = _clean({"user": user, "bio": bio, "invite_link": invite_link})
        return self._request("POST", f"/_sim/chats/{chat_id}/join_requests", json=body)

    def join_requests(self, chat_id: int) -> Any:
        return self._request("GET", f"/_sim/chats/{chat_id}/join_requests")

    def invite_links(self, chat_id: int) -> Any:
        return self._request("GET", f"/_sim/chats/{chat_id}/invite_links")

    def bans(self, chat_id: int) -> Any:
        return self._request("GET", f"/_sim/chats/{chat_id}/bans")

    def join_via_link(self, chat_id: int, user: Any, invite_link: str) -> Any:
        """A user joins at once through a link that does not create join requests."""
        body = _clean({"user": user, "invite_link": invite_link})
        return self._request("POST", f"/_sim/chats/{chat_id}/members", json=body)

    def post_message(self, chat_id: int, user: Any, text: str, *, bot: int | str | None = None,
                     reply_to_message_id: int | None = None) -> Any:  # fmt: skip
        body = _clean({"user": user, "text": text, "bot": bot, "reply_to_message_id": reply_to_message_id})
        return self._request("POST", f"/_sim/chats/{chat_id}/messages", json=body)

    def private_message(self, user: Any, text: str, *, bot: int | str | None = None) -> Any:
        """A user writes to a bot privately (e.g. "/start")."""
        return self._request("POST", "/_sim/messages", json=_clean({"user": user, "text": text, "bot": bot}))

    def edit_message(self, chat_id: int, message_id: int, text: str) -> Any:
        return self._request("POST", f"/_sim/chats/{chat_id}/messages/{message_id}/edit", json={"text": text})

    def messages(self, chat_id: int | None = None, *, sender: str = "all", bot: int | str | None = None,
                 since_at: float | None = None, include_deleted: bool = False) -> Any:  # fmt: skip
        """Messages (oldest first); sender: all | bots | users. Each row has its current text, its edit
        `history`, `pinned` and `deleted` (deleted ones only with include_deleted)."""
        params = _clean({"chat_id": chat_id, "sender": sender, "bot": bot, "since_at": since_at,
                         "include_deleted": "1" if include_deleted else None})  # fmt: skip
        return self._request("GET", "/_sim/messages", params=params)

    def delete_message(self, chat_id: int, message_id: int) -> Any:
        """An administrator deletes the message in the app (no Bot API call, no update)."""
        return self._request("DELETE", f"/_sim/chats/{chat_id}/messages/{message_id}")

    def age_messages(self, seconds: float, *, chat_id: int | None = None, message_id: int | None = None) -> Any:
        """Move messages' dates back by `seconds` (all, a chat's, or one), to cross the 48-hour rule."""
        body = _clean({"seconds": seconds, "chat_id": chat_id, "message_id": message_id})
        return self._request("POST", "/_sim/messages/age", json=body)

    def set_bot(self, chat_id: int, bot: int | str, *, status: str | None = None, action: str | None = None,
                rights: dict[str, bool] | None = None) -> Any:  # fmt: skip
        """Change the bot's standing: action add|kick|remove|promote|demote|restrict, or an explicit status."""
        body = _clean({"status": status, "action": action, "rights": rights})
        return self._request("POST", f"/_sim/chats/{chat_id}/bots/{bot}", json=body)

    def kick_bot(self, chat_id: int, bot: int | str) -> Any:
        return self.set_bot(chat_id, bot, action="kick")

    def promote_bot(self, chat_id: int, bot: int | str, rights: dict[str, bool] | None = None) -> Any:
        return self.set_bot(chat_id, bot, action="promote", rights=rights)

    def demote_bot(self, chat_id: int, bot: int | str) -> Any:
        return self.set_bot(chat_id, bot, action="demote")

    def upgrade(self, chat_id: int, new_id: int | None = None) -> Any:
        """Upgrade a basic group; returns the new supergroup's summary (its `id` is -100...)."""
        return self._request("POST", f"/_sim/chats/{chat_id}/upgrade", json=_clean({"new_id": new_id}))

    def set_title(self, chat_id: int, title: str) -> Any:
        return self._request("POST", f"/_sim/chats/{chat_id}/title", json={"title": title})

    # calls, faults, deliveries
    def calls(self, method: str | None = None, *, chat_id: int | None = None, bot: int | str | None = None,
              since: int | None = None, ok: bool | None = None, limit: int | None = None) -> Any:  # fmt: skip
        params = _clean({"method": method, "chat_id": chat_id, "bot": bot, "since": since, "limit": limit,
                         "ok": None if ok is None else str(ok).lower()})  # fmt: skip
        return self._request("GET", "/_sim/calls", params=params)

    def clear_calls(self) -> Any:
        return self._request("DELETE", "/_sim/calls")

    def uploads(self) -> Any:
        """{"count": n, "uploads": [{"method", "chat_id", "filename", "size", "sha256", "at"}, ...]}."""
        return self._request("GET", "/_sim/uploads")

    def add_fault(self, kind: str = "error", *, method: str | None = None, chat_id: int | None = None,
                  bot: int | str | None = None, times: int | None = 1, **spec: Any) -> Any:  # fmt: skip
        """kind error (error_code, description, parameters) | status (status, body) | hang (seconds,
        apply) | flood (retry_after). `times=None` keeps the fault until removed."""
        body = {"kind": kind, "times": times, **_clean({"method": method, "chat_id": chat_id, "bot": bot}), **spec}
        return self._request("POST", "/_sim/faults", json=body)

    def faults(self) -> Any:
        return self._request("GET", "/_sim/faults")

    def remove_fault(self, fault_id: int) -> Any:
        return self._request("DELETE", f"/_sim/faults/{fault_id}")

    def clear_faults(self) -> Any:
        return self._request("DELETE", "/_sim/faults")

    def webhook_deliveries(self, bot: int | str | None = None, attempts: int = 100) -> Any:
        return self._request("GET", "/_sim/webhook_deliveries", params=_clean({"bot": bot, "attempts": attempts}))

    def pending_updates(self, bot: int | str | None = None) -> Any:
        return self._request("GET", "/_sim/updates", params=_clean({"bot": bot}))


class SimControl(_ControlMethods):
    """Blocking control client: `SimControl("http://127.0.0.1:8081").create_chat("group", "G")`."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout, trust_env=False)

    def _request(self, method: str, path: str, *, json: dict[str, Any] | None = None,
                 params: dict[str, Any] | None = None) -> Any:  # fmt: skip
        return _unwrap(self._client.request(method, path, json=json, params=params))

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> SimControl:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class AsyncSimControl(_ControlMethods):
    """Async control client: every method returns an awaitable (`await ctl.join_request(chat_id)`)."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, trust_env=False)

    async def _request(self, method: str, path: str, *, json: dict[str, Any] | None = None,
                       params: dict[str, Any] | None = None) -> Any:  # fmt: skip
        return _unwrap(await self._client.request(method, path, json=json, params=params))

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> AsyncSimControl:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()
