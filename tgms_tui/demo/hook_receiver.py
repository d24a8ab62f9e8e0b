"""A local event-webhook receiver: what `tgms demo` subscribes to show deliveries arriving, and what
the hook tests and bench/hooks_bench.py post to.

It records every request (event, delivery id, body, the signature header, arrival time) and answers
200, or — to rehearse a failing receiver — a chosen status for the first N requests. Given the
subscription's secret (`secret`), it checks each signature as a receiver should (HMAC-SHA256 of
"<t>.<body>", compared in constant time, the timestamp within five minutes) and records the verdict;
the tests check signatures with their own code.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import select
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    event_type: str
    delivery_id: str
    signature: str
    body: bytes
    at: float  # time.time() on arrival
    status: int  # what the receiver answered
    verified: bool | None = None  # the signature checked out (None: no secret to check it with)

    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


def signature_ok(secret: str, header: str, body: bytes, tolerance: float = 300.0) -> bool:
    """The receiver's check of `X-TGMS-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields.get("t", ""))
    except ValueError:
        return False
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, fields.get("v1", "")) and abs(time.time() - timestamp) <= tolerance


class HookReceiver:
    """Runs in its own thread; `url` takes the events. Use as a context manager or start()/stop()."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, path: str = "/hooks") -> None:
        self.path = path
        self.received: list[Received] = []
        self.fail_next = 0  # answer `fail_status` to this many requests first
        self.fail_status = 503
        self.delay = 0.0  # seconds to wait before answering (a slow receiver)
        self.secret: str | None = None
        self.open_now = 0  # requests being answered right now
        self.peak_open = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status = receiver._answer()
                receiver._opened(+1)
                try:
                    if receiver.delay:
                        # Wait, but stop as soon as the client gives up (its socket turns readable at EOF):
                        # `peak_open` then counts the requests a client really had open at once.
                        select.select([self.connection], [], [], receiver.delay)
                finally:
                    receiver._opened(-1)
                signature = self.headers.get("X-TGMS-Signature", "")
                verified = None if receiver.secret is None else signature_ok(receiver.secret, signature, body)
                with receiver._lock:
                    receiver.received.append(
                        Received(
                            self.headers.get("X-TGMS-Event", ""),
                            self.headers.get("X-TGMS-Delivery", ""),
                            signature,
                            body,
                            time.time(),
                            status,
                            verified,
                        )
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="hook-receiver", daemon=True)

    def _opened(self, change: int) -> None:
        with self._lock:
            self.open_now += change
            self.peak_open = max(self.peak_open, self.open_now)

    def _answer(self) -> int:
        with self._lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                return self.fail_status
        return 200

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{self.path}"

    def accepted(self) -> list[Received]:
        """The requests answered 2xx, in arrival order."""
        with self._lock:
            return [r for r in self.received if 200 <= r.status < 300]

    def start(self) -> HookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> HookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
