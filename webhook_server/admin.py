"""`POST /api/tgms/send`: the seed's admin broadcast endpoint.

Checks, in order: source network (optional allow-list, 403), `x-api-key` in constant time (401),
body (400 when not JSON, 413 when huge, 422 naming the field Telegram would reject), then the broadcast
row and its job commit in one transaction (`create_broadcast`), once per `Idempotency-Key` (idempotent.py).
Outsiders learn nothing about the key (the allow-list is checked first) nor about the groups.

The pieces are separate so that every admin endpoint shares them: `AdminGate.check` (allow-list and
key), `AdminGate.read_body` (size-limited) and `Once.respond` (the idempotent transaction).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from tgms_tui.backend import paid_broadcasts
from tgms_tui.backend.broadcasts import create_broadcast
from tgms_tui.backend.message_validation import BroadcastRequest, ValidationError, validate_broadcast

from .access import NOT_ALLOWED, SourceAllowList, client_host
from .idempotent import Once
from .runtime import Runtime
from .telegram_endpoint import RETRY_AFTER_SECONDS
from .updates import MAX_BODY_BYTES

log = logging.getLogger(__name__)
ROUTE = "admin_send"


class AdminGate:
    """What every admin endpoint checks before its own work: the source allow-list, then the key."""

    def __init__(self, runtime: Runtime, api_key: str | None, allow_networks: Sequence[str], route: str) -> None:
        self._key = api_key.encode() if api_key else None
        self._allow = SourceAllowList(allow_networks)
        self._metrics = runtime.metrics
        self.route = route

    def reject(self, status: int, reason: str, detail: str, field: str | None = None) -> JSONResponse:
        self._metrics.rejected[(self.route, reason)] += 1
        body: dict[str, object] = {"detail": detail}
        if field is not None:
            body["field"] = field
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
        return JSONResponse(body, status_code=status, headers=headers)

    def allowed(self, host: str | None) -> bool:
        return self._allow.allows(host)

    def check(self, request: Request) -> JSONResponse | None:
        """The refusal to answer (403 source, 401 key), or None to go on."""
        if not self._allow.allows(client_host(request.scope)):
            return self.reject(403, "not_allowed", NOT_ALLOWED)
        given = request.headers.get("x-api-key", "").encode()
        if self._key is None or not hmac.compare_digest(given, self._key):
            detail = "missing or wrong x-api-key" if self._key else "admin API disabled: ADMIN_API_KEY is not set"
            return self.reject(401, "unauthorized", detail)
        return None

    async def read_body(self, request: Request) -> bytes | JSONResponse:
        """The body, or the 413 for one over MAX_BODY_BYTES (declared or streamed)."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return self.reject(413, "too_large", f"body larger than {MAX_BODY_BYTES} bytes")
        raw = bytearray()
        try:
            async for chunk in request.stream():
                raw += chunk
                if len(raw) > MAX_BODY_BYTES:
                    return self.reject(413, "too_large", f"body larger than {MAX_BODY_BYTES} bytes")
        except ClientDisconnect:  # gone (or cut off by the request timeout): nobody reads the answer
            return JSONResponse({"detail": "client disconnected"}, status_code=400)
        return bytes(raw)


class AdminSend:
    def __init__(self, runtime: Runtime, api_key: str | None, allow_networks: Sequence[str]) -> None:
        self._gate = AdminGate(runtime, api_key, allow_networks, ROUTE)
        self._once = Once(runtime, route=ROUTE, scope="POST /api/tgms/send")
        self._metrics = runtime.metrics

    def allowed(self, host: str | None) -> bool:
        return self._gate.allowed(host)

    def refusal(self, request: Request) -> JSONResponse | None:
        """The gate's answer (403 / 401) for every admin route that shares this one's key and list."""
        return self._gate.check(request)

    def _reject(self, status: int, reason: str, detail: str, field: str | None = None) -> JSONResponse:
        return self._gate.reject(status, reason, detail, field)

    async def handle(self, request: Request) -> Response:
        if (refused := self._gate.check(request)) is not None:
            return refused
        if (bad_key := self._once.key_problem(request)) is not None:
            return bad_key
        raw = await self._gate.read_body(request)
        if isinstance(raw, JSONResponse):
            return raw
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            return self._gate.reject(400, "malformed_json", "body is not valid JSON", field="body")
        if not isinstance(data, dict):
            return self._gate.reject(422, "invalid", "body must be a JSON object", field="body")
        try:
            req = validate_broadcast(data)
        except ValidationError as exc:
            return self._gate.reject(422, "invalid", exc.message, field=exc.field)
        client = client_host(request.scope)
        return await self._once.respond(
            request,
            raw,
            lambda conn: self._create(conn, req, client),
            on_commit=lambda answer: self._created(answer, client),
        )

    async def _create(
        self, conn: AsyncConnection[Any], req: BroadcastRequest, client: str | None
    ) -> tuple[int, dict[str, Any]]:
        try:
            broadcast_id, groups = await create_broadcast(conn, req, created_by=f"api:{client or '?'}")
        except ValidationError as exc:  # what needs the database: the groups, the debug code's length
            self._metrics.rejected[(ROUTE, "invalid")] += 1
            return 422, {"detail": exc.message, "field": exc.field}
        answer = {"status": "ok", "message": "Broadcast enqueued", "broadcast_id": broadcast_id, "groups": groups}
        if req.paid:  # the most it can cost, for the caller's records
            answer.update(paid=True, estimated_stars=paid_broadcasts.estimated_stars(groups))
        return 200, answer

    def _created(self, answer: dict[str, Any], client: str | None) -> None:
        if "broadcast_id" not in answer:
            return  # refused inside the transaction (422): nothing was created
        self._metrics.broadcasts_created += 1
        self._metrics.jobs_enqueued["tgms_send_to_groups"] += 1
        log.info("broadcast %d enqueued for %d group(s) by %s", answer["broadcast_id"], answer["groups"], client)
