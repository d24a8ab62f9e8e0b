"""`POST /api/tgms/send`: the seed's admin broadcast endpoint.

Checks, in order: source network (optional allow-list, 403), `x-api-key` in constant time (401),
body (400 when not JSON, 413 when huge, 422 naming the field Telegram would reject), then the broadcast
row and its job commit in one transaction (`submission.submit`), once per `Idempotency-Key` (idempotent.py).
The body is JSON, or multipart/form-data with a photo file (broadcast_payload.py: up to 10 MB of image,
stored with the broadcast in the same transaction); either may carry buttons, delete_after, a test
send, A/B variants and click tracking — the same `submission.prepare` the CLI and the composer use.
Outsiders learn nothing about the key (the allow-list is checked first) nor about the groups.

The pieces are separate so that every admin endpoint shares them: `AdminGate.check` (allow-list and
key), `AdminGate.read_body` (size-limited) and `Once.respond` (the idempotent transaction).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from tgms_tui.backend import submission
from tgms_tui.backend.message_validation import ValidationError

from . import broadcast_payload
from .access import NOT_ALLOWED, SourceAllowList, client_host
from .idempotent import Once
from .refusal import refuse
from .runtime import Runtime
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
        return refuse(self._metrics, self.route, status, reason, detail, field)

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

    async def read_body(self, request: Request, limit: int = MAX_BODY_BYTES) -> bytes | JSONResponse:
        """The body, or the 413 for one over `limit` bytes (declared or streamed)."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return self.reject(413, "too_large", f"body larger than {limit} bytes")
        raw = bytearray()
        try:
            async for chunk in request.stream():
                raw += chunk
                if len(raw) > limit:
                    return self.reject(413, "too_large", f"body larger than {limit} bytes")
        except ClientDisconnect:  # gone (or cut off by the request timeout): nobody reads the answer
            return JSONResponse({"detail": "client disconnected"}, status_code=400)
        return bytes(raw)


class AdminSend:
    def __init__(
        self,
        runtime: Runtime,
        api_key: str | None,
        allow_networks: Sequence[str],
        *,
        test_chat_id: int | None = None,
        public_base_url: str | None = None,
    ) -> None:
        self._public_base_url = public_base_url
        self._gate = AdminGate(runtime, api_key, allow_networks, ROUTE)
        self._test_chat_id = test_chat_id
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
        content_type = request.headers.get("content-type", "")
        raw = await self._gate.read_body(request, broadcast_payload.body_limit(content_type))
        if isinstance(raw, JSONResponse):
            return raw
        try:
            sub = broadcast_payload.parse(content_type, raw, self._public_base_url)
        except broadcast_payload.PayloadError as exc:
            reason = "malformed_json" if "JSON" in exc.detail else "malformed"
            return self._gate.reject(400, reason, exc.detail, field=exc.field)
        except ValidationError as exc:
            return self._gate.reject(422, "invalid", exc.message, field=exc.field)
        client = client_host(request.scope)
        return await self._once.respond(
            request,
            raw,
            lambda conn: self._create(conn, sub, client),
            on_commit=lambda answer: self._created(answer, client),
        )

    async def _create(
        self, conn: AsyncConnection[Any], sub: submission.Submission, client: str | None
    ) -> tuple[int, dict[str, Any]]:
        try:  # one transaction: the photo, the broadcast, its variants, buttons and expiry (or the test)
            answer = await submission.submit(conn, sub, f"api:{client or '?'}", self._test_chat_id)
        except ValidationError as exc:  # what needs the database: the groups, the debug code's length
            self._metrics.rejected[(ROUTE, "invalid")] += 1
            return 422, {"detail": exc.message, "field": exc.field}
        return 200, answer

    def _created(self, answer: dict[str, Any], client: str | None) -> None:
        if "test_send_id" in answer:
            log.info("test send %d to chat %d enqueued by %s", answer["test_send_id"], answer["chat_id"], client)
            return
        if "broadcast_id" not in answer:
            return  # refused inside the transaction (422): nothing was created
        self._metrics.broadcasts_created += 1
        self._metrics.jobs_enqueued["tgms_send_to_groups"] += 1
        log.info("broadcast %d enqueued for %d group(s) by %s", answer["broadcast_id"], answer["groups"], client)
