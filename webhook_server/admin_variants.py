"""The A/B side of the admin API (x-api-key, as `POST /api/tgms/send`):

- `GET  /api/tgms/broadcasts/{id}/variants`     each variant's groups, delivered, reach, clicks, click
                                                rate, the winner and the evidence in words
- `POST /api/tgms/broadcasts/{id}/send-winner`  {"variant": "B"} optional: send the winner (or that
                                                variant) to the groups the broadcast held back, as a
                                                new broadcast; 409 when there is no winner yet

Answers: 404 no such broadcast, 409 the action does not apply, 422 naming the field, 503 database
unavailable (Retry-After).
"""

from __future__ import annotations

import json
import logging
from functools import partial
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tgms_tui.backend import ab_stats, broadcast_variants
from tgms_tui.backend.broadcasts import BroadcastNotFound, BroadcastStateError
from tgms_tui.backend.message_validation import ValidationError

from .access import client_host
from .admin import AdminSend
from .refusal import refuse
from .runtime import NotStarted, Runtime
from .updates import MAX_BODY_BYTES

log = logging.getLogger(__name__)
ROUTE = "admin_variants"


def variant_number(value: Any) -> int | None:
    """A variant given as "A"-"D" or 1-4 (None: not given); ValidationError("variant")."""
    if value is None:
        return None
    if isinstance(value, str) and len(value.strip()) == 1 and value.strip().upper() in ab_stats.LABELS:
        return ab_stats.LABELS.index(value.strip().upper()) + 1
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= len(ab_stats.LABELS):
        return value
    raise ValidationError("variant", 'a variant is "A"-"D" (or 1-4)')


class AdminVariants:
    def __init__(self, runtime: Runtime, gate: AdminSend) -> None:
        self._runtime = runtime
        self._gate = gate
        self._answer = partial(refuse, runtime.metrics, ROUTE)

    def _id(self, request: Request) -> int | None:
        raw = str(request.path_params["broadcast_id"])
        return int(raw) if raw.isdigit() and len(raw) <= 18 else None

    async def show(self, request: Request) -> JSONResponse:
        if (refused := self._gate.refusal(request)) is not None:
            return refused
        broadcast_id = self._id(request)
        if broadcast_id is None:
            return self._answer(404, "not_found", "no such broadcast")
        try:
            async with self._runtime.require_pool().connection(timeout=5.0) as conn:
                report = await broadcast_variants.report(conn, broadcast_id)
        except (psycopg.OperationalError, PoolTimeout, NotStarted):
            return self._answer(503, "unavailable", "database unavailable, retry later")
        if report is None:
            return self._answer(404, "not_found", f"broadcast {broadcast_id} has no variants nor tracked links")
        return JSONResponse({"broadcast_id": broadcast_id, **broadcast_variants.report_json(report)})

    async def send_winner(self, request: Request) -> JSONResponse:
        if (refused := self._gate.refusal(request)) is not None:
            return refused
        broadcast_id = self._id(request)
        if broadcast_id is None:
            return self._answer(404, "not_found", "no such broadcast")
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            return self._answer(413, "too_large", f"body larger than {MAX_BODY_BYTES} bytes")
        try:
            body = json.loads(raw) if raw.strip() else {}
            if not isinstance(body, dict):
                raise ValidationError("body", "body must be a JSON object")
            unknown = set(body) - {"variant"}
            if unknown:
                raise ValidationError(sorted(unknown)[0], "unknown field")
            variant = variant_number(body.get("variant"))
        except (ValueError, RecursionError) as exc:
            if isinstance(exc, ValidationError):
                return self._answer(422, "invalid", exc.message, field=exc.field)
            return self._answer(400, "malformed_json", "body is not valid JSON", field="body")
        who = f"api:{client_host(request.scope) or '?'}"
        try:
            async with self._runtime.require_pool().connection(timeout=5.0) as conn:
                new_id, groups = await broadcast_variants.send_winner(conn, broadcast_id, who, variant)
        except (psycopg.OperationalError, PoolTimeout, NotStarted):
            return self._answer(503, "unavailable", "database unavailable, retry later")
        except BroadcastNotFound as exc:
            return self._answer(404, "not_found", str(exc))
        except BroadcastStateError as exc:
            return self._answer(409, "conflict", str(exc))
        except ValidationError as exc:
            return self._answer(422, "invalid", exc.message, field=exc.field)
        log.info(
            "broadcast %d: winner sent to %d held-back group(s) as broadcast %d by %s",
            broadcast_id,
            groups,
            new_id,
            who,
        )
        return JSONResponse(
            {
                "status": "ok",
                "message": "Broadcast enqueued",
                "broadcast_id": new_id,
                "groups": groups,
                "winner_of": broadcast_id,
            }
        )

    def routes(self) -> list[Route]:
        return [
            Route("/api/tgms/broadcasts/{broadcast_id}/variants", self.show, methods=["GET"]),
            Route("/api/tgms/broadcasts/{broadcast_id}/send-winner", self.send_winner, methods=["POST"]),
        ]
