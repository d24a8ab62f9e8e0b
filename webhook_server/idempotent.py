"""`Idempotency-Key` for the admin API's state-changing endpoints: a retried request does nothing new.

An endpoint hands its work to `Once.respond` as a function of a connection returning (status, body);
with the header present, the key is claimed in the transaction that does the work and the answer is
stored with it (tgms_tui/backend/idempotency.py), so a retry — after a timeout, or at the very same
moment — gets the first answer (same status and body, plus `Idempotent-Replayed: true`) and the work
runs once. The same key with a different body is refused (422, naming the header): the client reused a
key for another request, and answering with the first result would hide that. Without the header the
work simply runs in a transaction. Keys are per endpoint (`scope`) and kept at least 24 hours.

    return await self._once.respond(request, raw, lambda conn: self._edit(conn, req))
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import PoolTimeout
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tgms_tui.backend import idempotency

from .refusal import refuse
from .runtime import NotStarted, Runtime

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_KEY_RE = re.compile(r"[\x21-\x7e]{1,255}")  # visible ASCII, as the IETF draft's examples (UUIDs and such)

Work = Callable[[AsyncConnection[Any]], Awaitable[tuple[int, dict[str, Any]]]]


class Once:
    """Runs an endpoint's work at most once per Idempotency-Key (module docstring).

    `route` labels the rejection metrics (as the endpoint's own), `scope` names the endpoint in the
    key table (keys of different endpoints never meet)."""

    def __init__(self, runtime: Runtime, *, route: str, scope: str) -> None:
        self._runtime = runtime
        self._metrics = runtime.metrics
        self._route = route
        self._scope = scope

    def _reject(self, status: int, reason: str, detail: str, field: str | None = None) -> JSONResponse:
        return refuse(self._metrics, self._route, status, reason, detail, field)

    def key_problem(self, request: Request) -> JSONResponse | None:
        """A 400 for a malformed key header, to give before any other work; None when fine or absent."""
        key = request.headers.get(HEADER)
        if key is None or _KEY_RE.fullmatch(key):
            return None
        return self._reject(400, "invalid", f"{HEADER} must be 1-255 visible ASCII characters", field=HEADER)

    async def respond(
        self,
        request: Request,
        body: bytes,
        work: Work,
        on_commit: Callable[[dict[str, Any]], None] | None = None,
        kept_as: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> Response:
        """Run `work(conn)` in a transaction, at most once per key; its answer, or the stored one.
        `on_commit(body)` runs after a fresh (not replayed) answer committed: metrics, logs.
        `kept_as(body)` is what a replay gets instead of the fresh answer (e.g. without a secret that
        is shown once)."""
        if (problem := self.key_problem(request)) is not None:
            return problem
        key = request.headers.get(HEADER)
        digest = hashlib.sha256(body).hexdigest()
        try:
            async with self._runtime.require_pool().connection(timeout=5.0) as conn, conn.transaction():
                if key is not None:
                    stored = await idempotency.claim(conn, self._scope, key, digest)
                    if stored is not None:
                        if stored.request_hash != digest:
                            return self._reject(
                                422, "invalid", f"{HEADER} was already used for a different request body", field=HEADER
                            )
                        self._metrics.idempotent_replays[self._route] += 1
                        return Response(
                            stored.response.encode(),
                            status_code=stored.status_code,
                            headers={REPLAYED_HEADER: "true"},
                            media_type="application/json",
                        )
                status, answer = await work(conn)
                response = JSONResponse(answer, status_code=status)
                if key is not None:
                    kept = bytes(response.body).decode() if kept_as is None else json.dumps(kept_as(answer))
                    await idempotency.record(conn, self._scope, key, status, kept)
        except (psycopg.OperationalError, PoolTimeout, NotStarted) as exc:
            log.warning("%s not done: %s", self._scope, type(exc).__name__)
            return self._reject(503, "unavailable", "database unavailable, retry later")
        if on_commit is not None:
            on_commit(answer)
        return response
