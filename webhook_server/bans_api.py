"""The fleet's ban list over the admin API:

- `GET /api/tgms/bans[?all=true]`      the list (in force and expired entries; `all`: lifted too)
- `POST /api/tgms/bans`                `{"user_id", "reason", "until"?}`: ban in every managed group
- `DELETE /api/tgms/bans/{user_id}`    lift it everywhere
- `GET /api/tgms/bans/{user_id}`       the user's latest ban, group by group

The same gate as `POST /api/tgms/send` (admin.py): the source allow-list first (403), then
`x-api-key` in constant time (401), then the body (400 not JSON, 413 too large, 422 naming the
field). A ban is recorded as made by `api:<client address>`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tgms_tui.backend import bans

from .admin import AdminSend
from .runtime import NotStarted, Runtime

log = logging.getLogger(__name__)


class AdminBans(AdminSend):
    """Shares AdminSend's allow-list, key check and rejection counting."""

    def __init__(self, runtime: Runtime, api_key: str | None, allow_networks: Any) -> None:
        super().__init__(runtime, api_key, allow_networks)
        self._runtime = runtime

    def routes(self) -> list[Route]:
        return [
            Route("/api/tgms/bans", self.list_or_ban, methods=["GET", "POST"]),
            Route("/api/tgms/bans/{user_id}", self.one, methods=["GET", "DELETE"]),
        ]

    async def _body(self, request: Request) -> dict[str, Any] | JSONResponse:
        raw = await self._gate.read_body(request)
        if isinstance(raw, JSONResponse):
            return raw
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            return self._reject(400, "malformed_json", "body is not valid JSON", field="body")
        if not isinstance(data, dict):
            return self._reject(422, "invalid", "body must be a JSON object", field="body")
        return data

    def _unavailable(self, exc: Exception) -> JSONResponse:
        log.warning("ban list not reached: %s", type(exc).__name__)
        return self._reject(503, "unavailable", "database unavailable, retry later")

    async def list_or_ban(self, request: Request) -> JSONResponse:
        if (refused := self.refusal(request)) is not None:
            return refused
        if request.method == "GET":
            include = request.query_params.get("all", "false").lower() in ("1", "true", "yes")
            try:
                async with self._runtime.require_pool().connection(timeout=5.0) as conn:
                    listed = await bans.list_bans(conn, include_lifted=include)
            except (psycopg.OperationalError, PoolTimeout, NotStarted) as exc:
                return self._unavailable(exc)
            return JSONResponse({"bans": [b.as_json() for b in listed]})
        body = await self._body(request)
        if isinstance(body, JSONResponse):
            return body
        try:
            user_id = bans.check_user_id(body.get("user_id"))
        except bans.BanError as exc:
            return self._reject(422, "invalid", str(exc), field="user_id")
        try:
            reason = bans.check_reason(body.get("reason"))
        except bans.BanError as exc:
            return self._reject(422, "invalid", str(exc), field="reason")
        until_text = body.get("until")
        if until_text is not None and not isinstance(until_text, str):
            return self._reject(422, "invalid", "until must be a string: a duration (7d) or an ISO time", "until")
        try:
            until = bans.parse_until(until_text)
        except bans.BanError as exc:
            return self._reject(422, "invalid", str(exc), field="until")
        client = request.client.host if request.client else "?"
        try:
            async with self._runtime.require_pool().connection(timeout=5.0) as conn:
                ban_id, groups = await bans.ban(conn, user_id, reason, f"api:{client}", until)
        except bans.BanError as exc:
            return self._reject(409, "conflict", str(exc))
        except (psycopg.OperationalError, PoolTimeout, NotStarted) as exc:
            return self._unavailable(exc)
        log.info("user %s banned by %s (ban %d, %d group(s))", user_id, client, ban_id, groups)
        return JSONResponse(
            {"status": "ok", "ban_id": ban_id, "user_id": user_id, "groups": groups,
             "until": until.isoformat() if until else None},
            status_code=201,
        )  # fmt: skip

    async def one(self, request: Request) -> JSONResponse:
        if (refused := self.refusal(request)) is not None:
            return refused
        try:
            user_id = bans.check_user_id(request.path_params["user_id"])
        except bans.BanError as exc:
            return self._reject(422, "invalid", str(exc), field="user_id")
        client = request.client.host if request.client else "?"
        try:
            async with self._runtime.require_pool().connection(timeout=5.0) as conn:
                if request.method == "DELETE":
                    try:
                        ban_id, groups = await bans.unban(conn, user_id, f"api:{client}")
                    except bans.BanError as exc:
                        return self._reject(404, "not_found", str(exc))
                    log.info("user %s unbanned by %s (ban %d)", user_id, client, ban_id)
                    return JSONResponse({"status": "ok", "ban_id": ban_id, "user_id": user_id, "groups": groups})
                latest = await bans.latest_ban_id(conn, user_id)
                if latest is None:
                    return self._reject(404, "not_found", f"user {user_id} was never banned")
                listed = [b for b in await bans.list_bans(conn, include_lifted=True) if b.ban_id == latest]
                rows = await bans.groups_of(conn, latest)
        except (psycopg.OperationalError, PoolTimeout, NotStarted) as exc:
            return self._unavailable(exc)
        return JSONResponse({**listed[0].as_json(), "per_group": [r.as_json() for r in rows]})
