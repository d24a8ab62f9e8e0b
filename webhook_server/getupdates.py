"""The three Bot API calls the long-polling intake makes: getUpdates, getWebhookInfo, deleteWebhook.

Why not the workers' Bot API client: roles never import each other, and that client is built for
sending (a shared rate limiter, "maybe delivered" semantics, a transport tuned for many short calls),
none of which a poller wants. Moving it into the shared backend would put an HTTP client that only
two roles use into the core every process (the TUI too) loads. The poller needs far less: one long
request at a time, and only four outcomes to tell apart, each with its own reaction —

- the updates (a list, maybe empty);
- `TokenRejected`: 401/404, the token was revoked or mistyped: nothing will change by retrying;
- `Conflict`: 409, a webhook is set, or another getUpdates caller took over;
- `Unavailable`: 429 (with `retry_after`), 5xx, a gateway page, a network error or a timeout: back
  off and ask again (the updates stay at Telegram, unconfirmed).

The token is part of every URL: it is kept out of every exception text (httpx's carry the URL), and
httpx's own request log is held at WARNING by the process's logging setup.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from tgms_tui.backend.lean_transport import LeanTransport, proxy_applies
from tgms_tui.backend.redaction import redact, register_secrets

# Seconds added to the long-poll timeout before the client gives up on an answer.
READ_MARGIN = 15.0


class BotApiError(Exception):
    def __init__(self, description: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(redact(description))
        self.status = status
        self.retry_after = retry_after


class TokenRejected(BotApiError):
    """401/404: the token is wrong or was revoked in @BotFather."""


class Conflict(BotApiError):
    """409: a webhook is set (`webhook_active`), or a newer getUpdates call ended this one."""

    @property
    def webhook_active(self) -> bool:
        return "webhook" in str(self).lower()


class Unavailable(BotApiError):
    """Try again later: 429 (`retry_after` set), 5xx, no Bot API answer, network error or timeout."""


def bot_id_of(token: str) -> int | None:
    head = token.partition(":")[0]
    return int(head) if head.isdigit() else None


class UpdatesClient:
    """getUpdates and the webhook calls for one bot."""

    def __init__(self, token: str, api_base: str, *, connect_timeout: float = 10.0, lean: bool = True) -> None:
        """`lean`: on the backend's lean HTTP transport (a fraction of httpx's CPU per call, which is
        latency on a busy machine), unless a proxy variable covers the Bot API's host."""
        register_secrets([token])
        self.bot_id = bot_id_of(token)
        self._base = f"{api_base.rstrip('/')}/bot{token}/"
        timeout = httpx.Timeout(30.0, connect=connect_timeout)
        if lean and not proxy_applies(api_base):
            self._http = httpx.AsyncClient(
                timeout=timeout, transport=LeanTransport(max_connections=4, keepalive_expiry=4.0)
            )
        else:
            self._http = httpx.AsyncClient(timeout=timeout)

    def __repr__(self) -> str:
        return f"UpdatesClient(bot_id={self.bot_id!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def get_updates(
        self, offset: int | None, *, timeout: float, allowed_updates: Sequence[str], limit: int = 100
    ) -> list[dict[str, Any]]:
        """Updates from `offset` on (confirming every update below it), waiting up to `timeout` s."""
        params: dict[str, Any] = {"timeout": int(timeout), "limit": limit, "allowed_updates": list(allowed_updates)}
        if offset is not None:
            params["offset"] = offset
        result = await self._call("getUpdates", params, read_timeout=timeout + READ_MARGIN)
        if not isinstance(result, list) or not all(isinstance(u, dict) for u in result):
            raise Unavailable("getUpdates answered something other than a list of updates")
        return result

    async def get_webhook_info(self) -> dict[str, Any]:
        result = await self._call("getWebhookInfo", {})
        if not isinstance(result, dict):
            raise Unavailable("getWebhookInfo answered something other than an object")
        return result

    async def delete_webhook(self, *, drop_pending_updates: bool) -> None:
        await self._call("deleteWebhook", {"drop_pending_updates": drop_pending_updates})

    async def _call(self, method: str, params: dict[str, Any], *, read_timeout: float = 30.0) -> Any:
        timeout = httpx.Timeout(read_timeout, connect=self._http.timeout.connect)
        failure: BotApiError | None = None
        try:
            response = await self._http.post(self._base + method, json=params, timeout=timeout)
        except httpx.HTTPError as exc:
            # Built here, raised below: httpx's exception (its text carries the URL) must not travel
            # as the cause or context of ours.
            failure = Unavailable(f"{method}: {type(exc).__name__}: {redact(str(exc)) or 'no detail'}")
        if failure is not None:
            raise failure
        return _result(method, response)


def _result(method: str, response: httpx.Response) -> Any:
    status = response.status_code
    try:
        data = response.json()
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict) or "ok" not in data:
        if status == 401 or status == 404:
            raise TokenRejected(f"{method}: HTTP {status}", status=status)
        raise Unavailable(f"{method}: HTTP {status} without a Bot API answer", status=status)
    if data["ok"] is True:
        return data.get("result")
    code = status if status >= 400 else int(data.get("error_code") or 400)
    description = str(data.get("description") or f"HTTP {code}")
    raw_parameters = data.get("parameters")
    parameters: dict[str, Any] = raw_parameters if isinstance(raw_parameters, dict) else {}
    if code == 429 or "retry_after" in parameters:
        retry_after = _seconds(parameters.get("retry_after"), response.headers.get("retry-after"))
        raise Unavailable(f"{method}: {description}", status=code, retry_after=retry_after)
    if code in (401, 404):
        raise TokenRejected(f"{method}: {description}", status=code)
    if code == 409:
        raise Conflict(description, status=code)
    if code >= 500:
        raise Unavailable(f"{method}: {description}", status=code)
    # 400s and the rest: a request TGMS built wrongly, which retrying will not fix either, but a
    # poller must never give up on updates over it: treat it as a fault to back off from, loudly.
    raise Unavailable(f"{method}: {description}", status=code)


def _seconds(*values: Any) -> float:
    for value in values:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            continue
        if seconds >= 0:
            return seconds
    return 1.0


def describe(exc: BaseException) -> str:
    """One redacted line for a log or a health row."""
    text = str(exc) if isinstance(exc, BotApiError) else f"{type(exc).__name__}: {exc}"
    return redact(text.strip().splitlines()[0] if text.strip() else type(exc).__name__)
