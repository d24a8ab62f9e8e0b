"""The `/bot<token>/<method>` endpoint: the HTTP face of the Bot API.

Order of checks, as on api.telegram.org: token shape (401 "invalid token specified"), token known
(401 "Unauthorized"), method known (404 "Not Found: method not found"), then injected faults, then
the method itself. Every call is recorded (bot id/username only, never the token) with its
parameters, outcome and time. Responses use HTTP status == error_code, `parameters` only when
non-empty, and a `Retry-After` header on 429 like the real server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from http import HTTPStatus
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from telegram_sim import errors
from telegram_sim import invite_links as _invite_links  # noqa: F401 - importing registers the handlers
from telegram_sim import message_edits as _message_edits  # noqa: F401 - importing registers the handlers
from telegram_sim import methods as _methods  # noqa: F401 - importing registers the handlers
from telegram_sim import webhook_methods as _webhook_methods  # noqa: F401
from telegram_sim.calls import redact_params
from telegram_sim.context import ASYNC_METHODS, METHODS, CallContext, Described, lookup, run_sync
from telegram_sim.errors import BotApiError
from telegram_sim.faults import NGINX_502, Fault
from telegram_sim.model import Bot
from telegram_sim.params import BodyError, Params, UploadedFile, read_params
from telegram_sim.state import SimState, token_is_well_formed
from telegram_sim.webhooks import WebhookDispatcher

log = logging.getLogger("telegram_sim")

# Methods Telegram ignores when a webhook answer carries them.
_IGNORED_IN_WEBHOOK_REPLY = frozenset({"setwebhook", "deletewebhook", "close", "logout"})


def json_response(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return Response(content, status_code=status, media_type="application/json", headers=headers)


def error_response(error: BotApiError) -> Response:
    headers = None
    if error.code == 429 and "retry_after" in error.parameters:
        headers = {"Retry-After": str(error.parameters["retry_after"])}
    return json_response(error.envelope(), error.code, headers)


class BotApi:
    def __init__(self, state: SimState, dispatcher: WebhookDispatcher) -> None:
        self.state = state
        self.dispatcher = dispatcher

    async def endpoint(self, request: Request) -> Response:
        await self.dispatcher.start()
        token = request.path_params["token"]
        name = request.path_params["method"]
        at = time.time()
        if not token_is_well_formed(token):
            return self._refuse(BotApiError(*errors.INVALID_TOKEN), name, {}, None, at)
        bot = self.state.bot_by_token(token)
        try:
            params = await read_params(request)
        except BodyError as exc:
            return self._refuse(errors.bad_request(str(exc)), name, {}, bot, at)
        if bot is None:
            return self._refuse(BotApiError(*errors.UNAUTHORIZED), name, params.for_record(), None, at)
        return await self.call(bot, name, params, at=at)

    async def not_found(self, request: Request) -> Response:
        return error_response(BotApiError(*errors.NOT_FOUND))

    def _refuse(self, error: BotApiError, name: str, params: dict[str, Any], bot: Bot | None,
                at: float) -> Response:  # fmt: skip
        self._record(bot, name, params, None, error, at, error.code)
        return error_response(error)

    async def call(self, bot: Bot, name: str, params: Params, *, at: float | None = None,
                   via: str = "http") -> Response:  # fmt: skip
        """Run one Bot API call for `bot` and answer it as the real server would."""
        at = time.time() if at is None else at
        canonical = lookup(name)
        record_params = params.for_record()
        if canonical is None:
            error = BotApiError(*errors.METHOD_NOT_FOUND)
            self._record(bot, name, record_params, None, error, at, error.code, via=via)
            return error_response(error)
        chat_id = _chat_id(params)
        for value in params.values.values():
            if isinstance(value, UploadedFile):  # counted as the bytes arrive, whatever the answer
                self.state.record_upload(canonical, chat_id, value.filename, value.data)
        fault = self.state.faults.take(canonical, chat_id, bot.id)
        if fault is not None:
            answer = await self._apply_fault(fault, bot, canonical, record_params, chat_id, at, via)
            if answer is not None:
                return answer
        ctx = CallContext(self.state, bot, params, self.dispatcher)
        try:
            key = canonical.lower()
            if key in ASYNC_METHODS:
                result = await ASYNC_METHODS[key][1](ctx)
            else:
                result = run_sync(ctx, METHODS[key][1])
        except BotApiError as refused:
            self._record(bot, canonical, record_params, None, refused, at, refused.code, chat_id=chat_id, via=via)
            return error_response(refused)
        except Exception:
            log.exception("simulator error in %s", canonical)
            crash = BotApiError(500, "Internal Server Error")
            self._record(bot, canonical, record_params, None, crash, at, 500, chat_id=chat_id, via=via)
            return error_response(crash)
        body: dict[str, Any] = {"ok": True, "result": result}
        if isinstance(result, Described):
            body = {"ok": True, "result": result.value, "description": result.description}
        self._record(bot, canonical, record_params, body["result"], None, at, 200, chat_id=chat_id, via=via)
        return json_response(body)

    async def _apply_fault(self, fault: Fault, bot: Bot, method: str, params: dict[str, Any],
                           chat_id: int | None, at: float, via: str) -> Response | None:  # fmt: skip
        """The fault's answer, or None when the call should now proceed (a hang that applies)."""
        if fault.kind == "hang":
            await asyncio.sleep(fault.seconds)
            if fault.apply:
                return None
            status = 504
            self._record(bot, method, params, None, None, at, status, chat_id=chat_id, via=via,
                         fault_id=fault.id, description=f"{status} {HTTPStatus(status).phrase}")  # fmt: skip
            return Response(_html_error(status), status_code=status, media_type="text/html")
        if fault.kind == "status":
            body = fault.body if fault.body is not None else (NGINX_502 if fault.status == 502 else
                                                              _html_error(fault.status))  # fmt: skip
            self._record(bot, method, params, None, None, at, fault.status, chat_id=chat_id, via=via,
                         fault_id=fault.id, description=f"{fault.status} {_phrase(fault.status)}")  # fmt: skip
            return Response(body, status_code=fault.status, media_type="text/html")
        if fault.kind == "flood":
            error = errors.too_many_requests(fault.retry_after)
        else:
            error = BotApiError(fault.error_code, fault.description, fault.parameters)
        self._record(bot, method, params, None, error, at, error.code, chat_id=chat_id, via=via, fault_id=fault.id)
        return error_response(error)

    def _record(self, bot: Bot | None, method: str, params: dict[str, Any], result: Any,
                error: BotApiError | None, at: float, http_status: int, *, chat_id: int | None = None,
                via: str = "http", fault_id: int | None = None, description: str | None = None) -> None:  # fmt: skip
        ok = error is None and http_status == 200
        self.state.calls.record(
            at=at,
            method=method,
            params=redact_params(params),
            ok=ok,
            error_code=None if ok else (error.code if error else http_status),
            description=error.description if error else description,
            parameters=error.parameters if error and error.parameters else None,
            result=result if ok else None,
            bot_id=bot.id if bot else None,
            bot_username=bot.username if bot else None,
            chat_id=chat_id,
            http_status=http_status,
            duration_ms=round((time.time() - at) * 1000.0, 3),
            via=via,
            fault_id=fault_id,
        )

    async def execute_webhook_reply(self, bot_id: int, payload: dict[str, Any]) -> None:
        """Run the method a webhook answer carried, as Telegram does (get* and webhook calls ignored)."""
        name = str(payload.get("method", ""))
        if name.lower().startswith("get") or name.lower() in _IGNORED_IN_WEBHOOK_REPLY:
            return
        bot = self.state.bots.get(bot_id)
        if bot is None:
            return
        params = Params({k: v for k, v in payload.items() if k != "method"})
        await self.call(bot, name, params, via="webhook_reply")


def _chat_id(params: Params) -> int | None:
    try:
        return params.integer("chat_id")
    except ValueError:
        return None


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _html_error(status: int) -> str:
    title = f"{status} {_phrase(status)}"
    return f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n" \
           "<hr><center>nginx/1.18.0</center>\r\n</body>\r\n</html>\r\n"  # fmt: skip
