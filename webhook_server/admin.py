"""`POST /api/tgms/send`: the seed's admin broadcast endpoint.

Checks, in order: source network (optional allow-list, 403), `x-api-key` in constant time (401),
body (400 when not JSON, 413 when huge, 422 naming the field Telegram would reject), then the broadcast
row and its job commit in one transaction (`create_broadcast`). Outsiders learn nothing about the key
(the allow-list is checked first) nor about the groups.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from collections.abc import Sequence

import psycopg
from psycopg_pool import PoolTimeout
from starlette.requests import Request
from starlette.responses import JSONResponse

from tgms_tui.backend.broadcasts import create_broadcast
from tgms_tui.backend.message_validation import ValidationError, validate_broadcast

from .runtime import NotStarted, Runtime
from .telegram_endpoint import RETRY_AFTER_SECONDS
from .updates import MAX_BODY_BYTES

log = logging.getLogger(__name__)
ROUTE = "admin_send"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AdminSend:
    def __init__(self, runtime: Runtime, api_key: str | None, allow_networks: Sequence[str]) -> None:
        self._runtime = runtime
        self._key = api_key.encode() if api_key else None
        self._networks: list[Network] = [ipaddress.ip_network(n, strict=False) for n in allow_networks]
        self._metrics = runtime.metrics

    def _reject(self, status: int, reason: str, detail: str, field: str | None = None) -> JSONResponse:
        self._metrics.rejected[(ROUTE, reason)] += 1
        body: dict[str, object] = {"detail": detail}
        if field is not None:
            body["field"] = field
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
        return JSONResponse(body, status_code=status, headers=headers)

    def allowed(self, host: str | None) -> bool:
        if not self._networks:
            return True
        if host is None:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in net for net in self._networks)

    def refuse(self, request: Request) -> JSONResponse | None:
        """The answer for a caller who may not use the admin API (network, then key), else None."""
        client = request.client.host if request.client else None
        if not self.allowed(client):
            return self._reject(403, "not_allowed", "source address not allowed")
        given = request.headers.get("x-api-key", "").encode()
        if self._key is None or not hmac.compare_digest(given, self._key):
            detail = "missing or wrong x-api-key" if self._key else "admin API disabled: ADMIN_API_KEY is not set"
            return self._reject(401, "unauthorized", detail)
        return None

    async def handle(self, request: Request) -> JSONResponse:
        client = request.client.host if request.client else None
        if (refused := self.refuse(request)) is not None:
            return refused
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return self._reject(413, "too_large", f"body larger than {MAX_BODY_BYTES} bytes")
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BODY_BYTES:
                return self._reject(413, "too_large", f"body larger than {MAX_BODY_BYTES} bytes")
        try:
            data = json.loads(bytes(raw))
        except (ValueError, RecursionError):
            return self._reject(400, "malformed_json", "body is not valid JSON", field="body")
        if not isinstance(data, dict):
            return self._reject(422, "invalid", "body must be a JSON object", field="body")
        try:
            req = validate_broadcast(data)
        except ValidationError as exc:
            return self._reject(422, "invalid", exc.message, field=exc.field)
        try:
            async with self._runtime.require_pool().connection(timeout=5.0) as conn:
                broadcast_id, groups = await create_broadcast(conn, req, created_by=f"api:{client or '?'}")
        except (psycopg.OperationalError, PoolTimeout, NotStarted) as exc:
            log.warning("broadcast not stored: %s", type(exc).__name__)
            return self._reject(503, "unavailable", "database unavailable, retry later")
        self._metrics.broadcasts_created += 1
        self._metrics.jobs_enqueued["tgms_send_to_groups"] += 1
        log.info("broadcast %d enqueued for %d group(s) by %s", broadcast_id, groups, client)
        return JSONResponse(
            {"status": "ok", "message": "Broadcast enqueued", "broadcast_id": broadcast_id, "groups": groups}
        )
