"""The join gate in the admin API (x-api-key, as `POST /api/tgms/send`):

- `POST|PATCH /api/tgms/groups/{id}` `{"join_policy": "verify", "verify_text": ..., ...}`: a group's gate
- `POST /api/tgms/groups/{id}/release`, `POST /api/tgms/fleet/release`: end a raid hold now
- `GET /api/tgms/join-gate`, `POST|PATCH /api/tgms/join-gate` `{"group_per_minute", "fleet_per_minute",
  "calm_seconds"}`: the anti-raid thresholds and the fleet's hold
- `GET /api/tgms/join-requests?status=pending[,held,ambiguous]&group_id=ID`: the queue (default: all three)
- `POST /api/tgms/join-requests/{id}/approve|decline`, `POST /api/tgms/join-requests/approve|decline`
  `{"ids": [...]}`, `{"group_id": ID}` and/or `{"link": NAME_OR_ID}` (a named invite link: every
  waiting request that came through it): decisions, queued for the TGMS worker (202)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tgms_tui.backend import join_gate

from .admin import AdminSend
from .runtime import NotStarted, Runtime
from .telegram_endpoint import RETRY_AFTER_SECONDS
from .updates import MAX_BODY_BYTES

log = logging.getLogger(__name__)
Endpoint = Callable[[Request], Awaitable[Response]]
LIST_STATUSES = ("pending", "held", "ambiguous", "verifying", "processing", "approved", "declined",
                 "verification_failed", "expired", "failed", "already_member", "banned")  # fmt: skip


class _Refused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


class JoinGateApi:
    def __init__(self, runtime: Runtime, auth: AdminSend) -> None:
        self._runtime = runtime
        self._auth = auth

    def routes(self) -> list[Route]:
        g = self._guarded
        return [
            Route("/api/tgms/groups/{group_id:int}", g(self.set_group), methods=["POST", "PATCH"]),
            Route("/api/tgms/groups/-{group_id:int}", g(self.set_group, negative=True), methods=["POST", "PATCH"]),
            Route("/api/tgms/groups/{group_id:int}/release", g(self.release_group), methods=["POST"]),
            Route("/api/tgms/groups/-{group_id:int}/release", g(self.release_group, negative=True), methods=["POST"]),
            Route("/api/tgms/fleet/release", g(self.release_fleet), methods=["POST"]),
            Route("/api/tgms/join-gate", g(self.get_fleet), methods=["GET"]),
            Route("/api/tgms/join-gate", g(self.set_fleet), methods=["POST", "PATCH"]),
            Route("/api/tgms/join-requests", g(self.list_requests), methods=["GET"]),
            Route("/api/tgms/join-requests/{request_id:int}/{decision}", g(self.decide_one), methods=["POST"]),
            Route("/api/tgms/join-requests/{decision}", g(self.decide_many), methods=["POST"]),
        ]

    def _guarded(self, endpoint: Callable[..., Awaitable[Any]], *, negative: bool = False) -> Endpoint:
        async def handle(request: Request) -> Response:
            if (refused := self._auth.refusal(request)) is not None:
                return refused
            params = dict(request.path_params)
            if negative and "group_id" in params:
                params["group_id"] = -int(params["group_id"])
            try:
                async with self._runtime.require_pool().connection(timeout=5.0) as conn:
                    result = await endpoint(conn, request, **params)
            except _Refused as exc:
                return JSONResponse({"detail": exc.detail}, status_code=exc.status)
            except join_gate.GroupNotFound:
                return JSONResponse({"detail": "no such managed group"}, status_code=404)
            except ValueError as exc:
                return JSONResponse({"detail": str(exc)}, status_code=422)
            except (psycopg.OperationalError, PoolTimeout, NotStarted) as exc:
                log.warning("join gate API: database unavailable: %s", type(exc).__name__)
                return JSONResponse({"detail": "database unavailable, retry later"}, status_code=503,
                                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)})  # fmt: skip
            status, body = result
            return JSONResponse(_json(body), status_code=status)

        return handle

    async def _body(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            raise _Refused(413, f"body larger than {MAX_BODY_BYTES} bytes")
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise _Refused(400, "body is not valid JSON") from None
        if not isinstance(data, dict):
            raise _Refused(422, "body must be a JSON object")
        return data

    async def set_group(self, conn: Any, request: Request, group_id: int) -> tuple[int, Any]:
        body = await self._body(request)
        gate = await join_gate.set_group_gate(conn, group_id, body)
        return 200, {"status": "ok", "group": gate._asdict()}

    async def release_group(self, conn: Any, request: Request, group_id: int) -> tuple[int, Any]:
        await join_gate.release_group(conn, group_id)
        return 200, {"status": "ok", "group_id": group_id, "released": True}

    async def release_fleet(self, conn: Any, request: Request) -> tuple[int, Any]:
        await join_gate.release_fleet(conn)
        return 200, {"status": "ok", "fleet": (await join_gate.fleet(conn))._asdict()}

    async def get_fleet(self, conn: Any, request: Request) -> tuple[int, Any]:
        fleet = await join_gate.fleet(conn)
        held = await join_gate.held_groups(conn)
        return 200, {"fleet": fleet._asdict(), "held_groups": [g._asdict() for g in held]}

    async def set_fleet(self, conn: Any, request: Request) -> tuple[int, Any]:
        body = await self._body(request)
        unknown = set(body) - {"group_per_minute", "fleet_per_minute", "calm_seconds"}
        if unknown:
            raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
        fleet = await join_gate.set_fleet(conn, **body)
        return 200, {"status": "ok", "fleet": fleet._asdict()}

    async def list_requests(self, conn: Any, request: Request) -> tuple[int, Any]:
        statuses = tuple(s for s in request.query_params.get("status", ",".join(join_gate.QUEUE)).split(",") if s)
        bad = [s for s in statuses if s not in LIST_STATUSES]
        if bad:
            raise ValueError(f"status must be among {', '.join(LIST_STATUSES)}")
        group = request.query_params.get("group_id")
        try:
            group_id = int(group) if group else None
            limit = int(request.query_params.get("limit", "1000"))
        except ValueError:
            raise ValueError("group_id and limit must be integers") from None
        rows = await join_gate.list_requests(conn, statuses, group_id, limit=max(1, min(limit, 10_000)))
        return 200, {"join_requests": [r._asdict() for r in rows], "count": len(rows)}

    async def decide_one(self, conn: Any, request: Request, request_id: int, decision: str) -> tuple[int, Any]:
        return await self._decide(conn, request, decision, ids=[request_id], group_id=None, one=True)

    async def decide_many(self, conn: Any, request: Request, decision: str) -> tuple[int, Any]:
        body = await self._body(request)
        unknown = set(body) - {"ids", "group_id", "link"}
        if unknown:
            raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
        ids, group_id, link = body.get("ids"), body.get("group_id"), body.get("link")
        if ids is not None and (not isinstance(ids, list) or not all(type(i) is int for i in ids)):
            raise ValueError("ids must be a list of request ids")
        if group_id is not None and type(group_id) is not int:
            raise ValueError("group_id must be an integer")
        if type(link) is int:
            link = str(link)  # a link's id
        if link is not None and (not isinstance(link, str) or not link.strip() or len(link) > 64):
            raise ValueError("link must be an invite link's name or id")
        return await self._decide(conn, request, decision, ids=ids, group_id=group_id, link=link, one=False)

    async def _decide(self, conn: Any, request: Request, decision: str, *, ids: list[int] | None,
                      group_id: int | None, one: bool, link: str | None = None) -> tuple[int, Any]:  # fmt: skip
        if decision not in join_gate.DECISIONS:
            raise _Refused(404, "unknown action: use approve or decline")
        client = request.client.host if request.client else "?"
        # An unknown link is a LinkNotFound (a ValueError): 422 naming the field.
        async with conn.transaction():
            job, found = await join_gate.request_decisions(conn, decision, by=f"api:{client}", ids=ids,
                                                           group_id=group_id, link=link and link.strip())  # fmt: skip
        if not found:
            raise _Refused(409 if one else 404, "no waiting join request matches (already decided or unknown)")
        return 202, {"status": "ok", "decision": decision, "job_id": job, "request_ids": found}
