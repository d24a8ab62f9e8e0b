"""Event webhooks in the admin API (x-api-key and the source allow-list, as `POST /api/tgms/send`):

- `GET /api/tgms/hooks`                              the subscriptions (never their secrets)
- `POST /api/tgms/hooks` `{"url", "events"?}`        subscribe; 201 with the secret, the only time it is shown
- `GET /api/tgms/hooks/{id}`                         one subscription and its latest deliveries
- `DELETE /api/tgms/hooks/{id}`                      remove it with its delivery log
- `POST /api/tgms/hooks/{id}/pause|resume|test`      pause, resume, send a hook.test event (202)
- `POST /api/tgms/hooks/{id}/replay` `{"since", "until"?}`   queue again the events of a time range
- `GET /api/tgms/hooks/{id}/deliveries?status=&limit=`       its delivery log, newest first
- `GET /api/tgms/hooks/deliveries/{delivery_id}`            one delivery with every attempt
- `POST /api/tgms/hooks/deliveries/{delivery_id}/replay`    send it again (same event, new delivery id)

Every POST honours `Idempotency-Key` (idempotent.py). A retried subscribe gets its first answer without
the secret: the secret is never stored outside its subscription.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import PoolTimeout
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tgms_tui.backend import hooks
from tgms_tui.backend.config import Settings

from .admin import AdminSend
from .idempotent import Once
from .runtime import NotStarted, Runtime

log = logging.getLogger(__name__)
ROUTE = "admin_hooks"
Work = Callable[[AsyncConnection[Any]], Awaitable[tuple[int, dict[str, Any]]]]


def _secret_withheld(answer: dict[str, Any]) -> dict[str, Any]:
    if "secret" not in answer:
        return answer
    return {**answer, "secret": None, "secret_note": "the secret is shown only in the first answer"}


class HooksApi:
    def __init__(self, runtime: Runtime, auth: AdminSend, settings: Settings) -> None:
        self._runtime = runtime
        self._auth = auth
        self._allow_private = settings.hooks_allow_private
        self._once = {
            name: Once(runtime, route=ROUTE, scope=f"POST /api/tgms/hooks{name}")
            for name in ("", "/pause", "/resume", "/test", "/replay", "/deliveries/replay")
        }

    def routes(self) -> list[Route]:
        return [
            Route("/api/tgms/hooks", self.list_or_add, methods=["GET", "POST"]),
            Route("/api/tgms/hooks/deliveries/{delivery_id:int}", self.one_delivery, methods=["GET"]),
            Route("/api/tgms/hooks/deliveries/{delivery_id:int}/replay", self.replay_delivery, methods=["POST"]),
            Route("/api/tgms/hooks/{sub:int}", self.one, methods=["GET", "DELETE"]),
            Route("/api/tgms/hooks/{sub:int}/deliveries", self.deliveries, methods=["GET"]),
            Route("/api/tgms/hooks/{sub:int}/{action}", self.act, methods=["POST"]),
        ]

    # ------------------------------------------------------------------ helpers

    def _reject(self, status: int, detail: str, field: str | None = None) -> JSONResponse:
        reason = {400: "malformed_json", 404: "not_found", 422: "invalid", 503: "unavailable"}.get(status, "invalid")
        return self._auth._reject(status, reason, detail, field)

    async def _body(self, request: Request, *, optional: bool = False) -> tuple[bytes, dict[str, Any]] | JSONResponse:
        raw = await self._auth._gate.read_body(request)
        if isinstance(raw, JSONResponse):
            return raw
        if optional and not raw.strip():
            return raw, {}
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            return self._reject(400, "body is not valid JSON", "body")
        if not isinstance(data, dict):
            return self._reject(422, "body must be a JSON object", "body")
        return raw, data

    async def _read(self, work: Callable[[AsyncConnection[Any]], Awaitable[Response]]) -> Response:
        try:
            async with self._runtime.require_pool().connection(timeout=5.0) as conn:
                return await work(conn)
        except (psycopg.OperationalError, PoolTimeout, NotStarted) as exc:
            log.warning("hooks not reached: %s", type(exc).__name__)
            return self._reject(503, "database unavailable, retry later")

    async def _write(self, request: Request, once: str, raw: bytes, work: Work, stored: Any = None) -> Response:
        async def guarded(conn: AsyncConnection[Any]) -> tuple[int, dict[str, Any]]:
            try:
                return await work(conn)
            except hooks.HookError as exc:
                status = 404 if str(exc).startswith("no ") else 422
                body: dict[str, Any] = {"detail": str(exc)}
                if exc.field:
                    body["field"] = exc.field
                return status, body

        return await self._once[once].respond(request, raw, guarded, kept_as=stored)

    # ------------------------------------------------------------------ endpoints

    async def list_or_add(self, request: Request) -> Response:
        if (refused := self._auth.refusal(request)) is not None:
            return refused
        if request.method == "GET":

            async def listing(conn: AsyncConnection[Any]) -> Response:
                listed = await hooks.list_subscriptions(conn)
                return JSONResponse({"hooks": [s.as_json() for s in listed]})

            return await self._read(listing)
        if (bad_key := self._once[""].key_problem(request)) is not None:
            return bad_key
        got = await self._body(request)
        if isinstance(got, JSONResponse):
            return got
        raw, data = got
        url = data.get("url")
        if not isinstance(url, str):
            return self._reject(422, "url must be a string: the receiver's http(s) URL", "url")
        if "events" in data and not isinstance(data["events"], list):
            return self._reject(422, 'events must be a list of event types, e.g. ["group.registered"]', "events")
        try:
            events = hooks.parse_events(data.get("events"))
            await hooks.check_url(url, allow_private=self._allow_private)
        except hooks.HookError as exc:
            return self._reject(422, str(exc), exc.field)
        client = request.client.host if request.client else "?"

        async def create(conn: AsyncConnection[Any]) -> tuple[int, dict[str, Any]]:
            sub_id, secret = await hooks.add(
                conn, url, events, f"api:{client}", allow_private=self._allow_private, checked=True
            )
            log.info("hook subscription %d added by %s", sub_id, client)
            return 201, {"status": "ok", "subscription_id": sub_id, "url": url, "events": events, "secret": secret}

        return await self._write(request, "", raw, create, stored=_secret_withheld)

    async def one(self, request: Request) -> Response:
        if (refused := self._auth.refusal(request)) is not None:
            return refused
        sub_id = int(request.path_params["sub"])
        if request.method == "DELETE":

            async def delete(conn: AsyncConnection[Any]) -> Response:
                if not await hooks.remove(conn, sub_id):
                    return self._reject(404, f"no subscription {sub_id}")
                await conn.commit()
                return JSONResponse({"status": "ok", "subscription_id": sub_id})

            return await self._read(delete)

        async def show(conn: AsyncConnection[Any]) -> Response:
            found = await hooks.get(conn, sub_id)
            if found is None:
                return self._reject(404, f"no subscription {sub_id}")
            recent = await hooks.deliveries(conn, subscription_id=sub_id, limit=20)
            return JSONResponse({**found.as_json(), "deliveries": [d.as_json() for d in recent]})

        return await self._read(show)

    async def deliveries(self, request: Request) -> Response:
        if (refused := self._auth.refusal(request)) is not None:
            return refused
        sub_id = int(request.path_params["sub"])
        status = request.query_params.get("status")
        if status is not None and status not in ("pending", "sending", "delivered", "failed"):
            return self._reject(422, "status must be pending, sending, delivered or failed", "status")
        try:
            limit = int(request.query_params.get("limit", "100"))
            if not 1 <= limit <= 1000:
                raise ValueError
        except ValueError:
            return self._reject(422, "limit must be an integer from 1 to 1000", "limit")

        async def listing(conn: AsyncConnection[Any]) -> Response:
            if await hooks.get(conn, sub_id) is None:
                return self._reject(404, f"no subscription {sub_id}")
            rows = await hooks.deliveries(conn, subscription_id=sub_id, status=status, limit=limit)
            return JSONResponse({"deliveries": [d.as_json() for d in rows]})

        return await self._read(listing)

    async def one_delivery(self, request: Request) -> Response:
        if (refused := self._auth.refusal(request)) is not None:
            return refused
        delivery_id = int(request.path_params["delivery_id"])

        async def show(conn: AsyncConnection[Any]) -> Response:
            found = await hooks.delivery(conn, delivery_id)
            if found is None:
                return self._reject(404, f"no delivery {delivery_id}")
            tries = await hooks.attempts(conn, delivery_id)
            return JSONResponse(
                {
                    **found.as_json(),
                    "attempts_log": [
                        {"attempt": a.attempt, "started_at": a.started_at.isoformat(), "latency_ms": a.latency_ms,
                         "status_code": a.status_code, "error": a.error}
                        for a in tries
                    ],
                }
            )  # fmt: skip

        return await self._read(show)

    async def replay_delivery(self, request: Request) -> Response:
        if (refused := self._auth.refusal(request)) is not None:
            return refused
        delivery_id = int(request.path_params["delivery_id"])
        got = await self._body(request, optional=True)
        if isinstance(got, JSONResponse):
            return got

        async def replay(conn: AsyncConnection[Any]) -> tuple[int, dict[str, Any]]:
            new_id = await hooks.replay(conn, delivery_id)
            return 202, {"status": "ok", "replay_of": delivery_id, "delivery_id": new_id}

        return await self._write(request, "/deliveries/replay", f"{delivery_id}:".encode() + got[0], replay)

    async def act(self, request: Request) -> Response:
        if (refused := self._auth.refusal(request)) is not None:
            return refused
        sub_id, action = int(request.path_params["sub"]), request.path_params["action"]
        if action not in ("pause", "resume", "test", "replay"):
            return self._reject(404, f"no such action {action!r}: pause, resume, test or replay")
        got = await self._body(request, optional=action != "replay")
        if isinstance(got, JSONResponse):
            return got
        raw, data = got
        key_body = f"{sub_id}:".encode() + raw
        if action == "replay":
            try:
                since = hooks.parse_moment(data.get("since"), "since")
                until = hooks.parse_moment(data.get("until"), "until")
            except hooks.HookError as exc:
                return self._reject(422, str(exc), exc.field)
            if since is None:
                return self._reject(422, "since is required: a duration ago (2h) or an ISO-8601 time", "since")

            async def replay(conn: AsyncConnection[Any]) -> tuple[int, dict[str, Any]]:
                end = until or await hooks.db_now(conn)
                count = await hooks.replay_range(conn, sub_id, since, end)
                return 202, {"status": "ok", "subscription_id": sub_id, "events": count,
                             "since": since.isoformat(), "until": end.isoformat()}  # fmt: skip

            return await self._write(request, "/replay", key_body, replay)

        async def change(conn: AsyncConnection[Any]) -> tuple[int, dict[str, Any]]:
            if action == "test":
                delivery_id = await hooks.send_test(conn, sub_id)
                return 202, {"status": "ok", "subscription_id": sub_id, "delivery_id": delivery_id}
            done = await (hooks.pause if action == "pause" else hooks.resume)(conn, sub_id)
            if not done:
                return 404, {"detail": f"no subscription {sub_id}"}
            return 200, {
                "status": "ok",
                "subscription_id": sub_id,
                "state": "paused" if action == "pause" else "active",
            }

        return await self._write(request, f"/{action}", key_body, change)
