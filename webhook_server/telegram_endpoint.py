"""`POST /api/webhook` (main bot) and `POST /api/webhook/tgms` (group-management bot).

A raw ASGI endpoint rather than a Starlette Request handler: this is the hot path (Telegram delivers
every update here) and a Request object, header dict and Response object per call cost more than the
whole check. Order matters: the secret is checked before the body is read, the size before it is
parsed, and 200 is sent only after the update's transaction committed.
"""

from __future__ import annotations

import hmac
import json
import time
from typing import Any

from starlette.types import Receive, Scope, Send

from .intake import IntakeUnavailable
from .runtime import Runtime
from .updates import MAX_BODY_BYTES, UpdateRejected, parse_update

SECRET_HEADER = b"x-telegram-bot-api-secret-token"
RETRY_AFTER_SECONDS = 5


def _response(status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> tuple[int, bytes, Any]:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(extra or [])]
    return status, body, headers


# An empty 200: Telegram reads a webhook answer's body as a Bot API call to make, so there is
# nothing to say; and uvicorn writes an empty body with no second send() system call.
_OK = (200, b"", [(b"content-length", b"0")])


def _error(status: int, message: str, extra: list[tuple[bytes, bytes]] | None = None) -> tuple[int, bytes, Any]:
    return _response(status, json.dumps({"ok": False, "error": message}).encode(), extra)


_FORBIDDEN = _error(403, "wrong or missing secret token")
_TOO_LARGE = _error(413, f"body larger than {MAX_BODY_BYTES} bytes")
_UNAVAILABLE = _error(503, "update not stored, retry later", [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())])


class _BodyTooLarge(Exception):
    pass


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The request body, refusing early on a declared Content-Length over `limit` and counting while
    streaming (chunked bodies declare nothing)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                if int(value) > limit:
                    raise _BodyTooLarge
            except ValueError:
                pass  # the server itself rejects malformed lengths
            break
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client went away")
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _BodyTooLarge
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class TelegramWebhook:
    """ASGI app receiving the updates of one bot (`bot` is recorded in every job it makes)."""

    def __init__(self, bot: str, secret: str | None, runtime: Runtime) -> None:
        self.bot = bot
        self.route = "webhook_" + bot
        self._secret = secret.encode() if secret else None
        self._runtime = runtime
        self._metrics = runtime.metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        try:
            status, body, headers = await self._handle(scope, receive)
        except ConnectionResetError:
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self._metrics.observe_latency(self.route, time.perf_counter() - started)

    def _rejected(self, reason: str) -> None:
        self._metrics.rejected[(self.route, reason)] += 1

    async def _handle(self, scope: Scope, receive: Receive) -> tuple[int, bytes, Any]:
        if self._secret is not None:
            given = b""
            for name, value in scope["headers"]:
                if name == SECRET_HEADER:
                    given = value
                    break
            if not hmac.compare_digest(given, self._secret):
                self._rejected("forbidden")
                return _FORBIDDEN
        try:
            raw = await _read_body(scope, receive, MAX_BODY_BYTES)
        except _BodyTooLarge:
            self._rejected("too_large")
            return _TOO_LARGE
        intake = self._runtime.intake
        try:
            if intake is None:
                raise IntakeUnavailable("not started")
            await intake.submit(self.bot, parse_update(raw))
        except UpdateRejected as exc:  # from the parse, or from the intake's check of an unchecked body
            self._rejected(exc.reason)
            return _error(400, str(exc))
        except IntakeUnavailable:
            self._rejected("unavailable")
            return _UNAVAILABLE
        return _OK
