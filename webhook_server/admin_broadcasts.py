"""The admin API's broadcasts: list, show, cancel, and edit while not started.

- `GET  /api/tgms/broadcasts?limit=50&before=ID`   newest first; `next_before` pages on
- `GET  /api/tgms/broadcasts/{id}`                 one broadcast and each group's delivery (debug code,
                                                   status, error, telegram_message_id)
- `POST /api/tgms/broadcasts/{id}/cancel`          cancel it (scheduled) or stop it before its next group
- `POST /api/tgms/broadcasts/{id}/edit`            {"text" | "caption" | "parse_mode" | "send_at"} of a
                                                   broadcast not started yet, checked like a new one; on a
                                                   started one a follow-up edit of every copy sent
                                                   ({"text" | "caption" | "parse_mode"}, debug codes kept)
- `POST /api/tgms/broadcasts/{id}/retract`         delete its copies (those within Telegram's 48 hours)
- `POST /api/tgms/broadcasts/{id}/pin`             {"silent": bool} pin its copies
- `POST /api/tgms/broadcasts/{id}/unpin`           unpin them

A follow-up answers `{"status": "ok", "action", "broadcast_id", "followup_id", "copies", "too_old"}`
and runs as a job; `GET` of the broadcast shows its outcome in each group (`followups`).

Every route passes the same gate as `POST /api/tgms/send` (allow-list, then `x-api-key` in constant
time) before it reads anything, and every POST honours `Idempotency-Key` (idempotent.py; a key is per
broadcast and action). Actions on one broadcast are a table (`ACTIONS`): a new action is one entry
and one backend function. Answers: 404 no such broadcast, 409 the action does not apply in its state,
422 naming the field, 503 database unavailable (Retry-After).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import PoolTimeout
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tgms_tui.backend import broadcasts, buttons, followups
from tgms_tui.backend.broadcasts import BroadcastNotFound, BroadcastStateError
from tgms_tui.backend.message_validation import ValidationError

from .admin import AdminSend
from .idempotent import Once
from .refusal import refuse
from .runtime import NotStarted, Runtime
from .updates import MAX_BODY_BYTES

log = logging.getLogger(__name__)
ROUTE = "admin_broadcasts"

# An action answers the broadcast it changed, or a follow-up's id (its job does the work).
Action = Callable[[AsyncConnection[Any], int, dict[str, Any], str], Awaitable["broadcasts.BroadcastSummary | int"]]


async def _cancel(conn: AsyncConnection[Any], broadcast_id: int, body: dict[str, Any], who: str) -> Any:
    return await broadcasts.cancel(conn, broadcast_id, who)


async def _edit(conn: AsyncConnection[Any], broadcast_id: int, body: dict[str, Any], who: str) -> Any:
    if (await broadcasts.get_broadcast(conn, broadcast_id)).status == "pending":
        return await broadcasts.edit_scheduled(conn, broadcast_id, body)
    if "send_at" in body:
        raise ValidationError("send_at", "the broadcast has started: its send time can no longer change")
    return await followups.request(conn, broadcast_id, "edit", who, changes=body)


def _followup(action: str) -> Action:
    async def run(conn: AsyncConnection[Any], broadcast_id: int, body: dict[str, Any], who: str) -> Any:
        allowed = {"silent"} if action == "pin" else set()
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise ValidationError(unknown[0], f"unknown field ({action} takes {', '.join(allowed) or 'no fields'})")
        silent = followups.parse_silent(body) if action == "pin" else False
        return await followups.request(conn, broadcast_id, action, who, silent=silent)

    return run


ACTIONS: dict[str, Action] = {
    "cancel": _cancel,
    "edit": _edit,
    "retract": _followup("retract"),
    "pin": _followup("pin"),
    "unpin": _followup("unpin"),
}


class AdminBroadcasts:
    def __init__(self, runtime: Runtime, gate: AdminSend) -> None:
        self._runtime = runtime
        self._gate = gate
        self._metrics = runtime.metrics
        self._answer = partial(refuse, runtime.metrics, ROUTE)

    async def _run(self, work: Callable[[AsyncConnection[Any]], Awaitable[Any]]) -> Any:
        """`work(conn)` in one transaction; the database's failures become a 503 answer (returned)."""
        try:
            async with self._runtime.require_pool().connection(timeout=5.0) as conn:
                return await work(conn)
        except (psycopg.OperationalError, PoolTimeout, NotStarted) as exc:
            log.warning("admin broadcasts: database unavailable: %s", type(exc).__name__)
            return self._answer(503, "unavailable", "database unavailable, retry later")

    async def list(self, request: Request) -> JSONResponse:
        refused = self._gate.refusal(request)
        if refused is not None:
            return refused
        try:
            limit = int(request.query_params.get("limit", broadcasts.LIST_LIMIT))
            before_raw = request.query_params.get("before")
            before = int(before_raw) if before_raw not in (None, "") else None
        except ValueError:
            return self._answer(422, "invalid", "limit and before must be integers", field="limit")
        if not 1 <= limit <= broadcasts.MAX_LIST_LIMIT:
            return self._answer(422, "invalid", f"limit must be 1-{broadcasts.MAX_LIST_LIMIT}", field="limit")

        async def work(conn: AsyncConnection[Any]) -> Any:
            return await broadcasts.list_broadcasts(conn, limit=limit, before=before)

        found = await self._run(work)
        if isinstance(found, JSONResponse):
            return found
        return JSONResponse(broadcasts.page_json(found, limit))

    async def show(self, request: Request) -> JSONResponse:
        refused = self._gate.refusal(request)
        if refused is not None:
            return refused
        broadcast_id = self._id(request)
        if isinstance(broadcast_id, JSONResponse):
            return broadcast_id

        async def work(conn: AsyncConnection[Any]) -> Any:
            b = await broadcasts.get_broadcast(conn, broadcast_id)
            reach = await broadcasts.targets_now(conn, b) if b.status == "pending" else None
            body = broadcasts.detail_json(b, await broadcasts.deliveries(conn, broadcast_id), reach)
            body["buttons"] = await buttons.of(conn, broadcast_id)
            body["followups"] = await followups.detail(conn, broadcast_id)
            return body

        try:
            body = await self._run(work)
        except BroadcastNotFound as exc:
            return self._answer(404, "not_found", str(exc))
        if isinstance(body, JSONResponse):
            return body
        return JSONResponse(body)

    async def act(self, request: Request) -> Response:
        refused = self._gate.refusal(request)
        if refused is not None:
            return refused
        broadcast_id = self._id(request)
        if isinstance(broadcast_id, JSONResponse):
            return broadcast_id
        name = str(request.path_params["action"])
        action = ACTIONS.get(name)
        if action is None:
            return self._answer(404, "not_found", f"no action {name!r}; actions: {', '.join(ACTIONS)}")
        once = Once(self._runtime, route=ROUTE, scope=f"POST /api/tgms/broadcasts/{broadcast_id}/{name}")
        if (bad_key := once.key_problem(request)) is not None:
            return bad_key
        raw = await self._raw(request)
        if isinstance(raw, JSONResponse):
            return raw
        body = self._parse(raw)
        if isinstance(body, JSONResponse):
            return body
        client = request.client.host if request.client else "?"
        who = f"api:{client}"

        async def work(conn: AsyncConnection[Any]) -> tuple[int, dict[str, Any]]:
            try:
                result = await action(conn, broadcast_id, body, who)
                if isinstance(result, int):
                    copies, too_old = await followups.reach(conn, broadcast_id)
                    return 200, {"status": "ok", "action": name, "broadcast_id": broadcast_id,
                                 "followup_id": result, "copies": copies, "too_old": too_old}  # fmt: skip
                return 200, {"status": "ok", "action": name, "broadcast": broadcasts.summary_json(result)}
            except BroadcastNotFound as exc:
                return self._refusal(404, "not_found", str(exc))
            except BroadcastStateError as exc:
                return self._refusal(409, "conflict", str(exc))
            except ValidationError as exc:
                return self._refusal(422, "invalid", exc.message, field=exc.field)

        def done(answer: dict[str, Any]) -> None:
            if answer.get("status") == "ok":
                log.info("broadcast %d: %s by %s", broadcast_id, name, who)

        return await once.respond(request, raw, work, on_commit=done)

    def _refusal(self, status: int, reason: str, detail: str, field: str | None = None) -> tuple[int, dict[str, Any]]:
        self._metrics.rejected[(ROUTE, reason)] += 1
        return status, {"detail": detail} | ({"field": field} if field is not None else {})

    def _id(self, request: Request) -> int | JSONResponse:
        raw = str(request.path_params["broadcast_id"])
        if not raw.isdigit() or len(raw) > 18:
            return self._answer(404, "not_found", f"no broadcast {raw[:40]!r}")
        return int(raw)

    async def _raw(self, request: Request) -> bytes | JSONResponse:
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BODY_BYTES:
                return self._answer(413, "too_large", f"body larger than {MAX_BODY_BYTES} bytes")
        return bytes(raw)

    def _parse(self, raw: bytes) -> dict[str, Any] | JSONResponse:
        """A JSON object (an empty body is {}); 400 / 413 / 422 as POST /api/tgms/send answers."""
        if not raw.strip():
            return {}
        try:
            data = json.loads(bytes(raw))
        except (ValueError, RecursionError):
            return self._answer(400, "malformed_json", "body is not valid JSON", field="body")
        if not isinstance(data, dict):
            return self._answer(422, "invalid", "body must be a JSON object", field="body")
        return data


def routes(runtime: Runtime, gate: AdminSend) -> list[Route]:
    api = AdminBroadcasts(runtime, gate)
    return [
        Route("/api/tgms/broadcasts", api.list, methods=["GET"]),
        Route("/api/tgms/broadcasts/{broadcast_id}", api.show, methods=["GET"]),
        Route("/api/tgms/broadcasts/{broadcast_id}/{action}", api.act, methods=["POST"]),
    ]
