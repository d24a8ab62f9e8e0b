"""uvicorn's HTTP protocol with a deadline for receiving each request, and a bound on its header size.

uvicorn times out only idle keep-alive connections, and any byte received cancels that timer: a
client that opens connections and trickles its headers, or a body, a byte at a time keeps each one
open for as long as it likes, and with them the server's connection slots (`--limit-concurrency`)
and file descriptors. ASGI middleware cannot help: the app is called only once the headers are in.

So the protocol itself arms a timer when a connection opens and when a request's first byte arrives,
and disarms it once the request is completely received (headers and body): a client that has not
sent a whole request within the timeout is disconnected (the app, if it was reading the body, sees a
disconnect). The response is never timed: a request waiting for the database keeps its connection.
httptools has no header size limit of its own (h11 has `h11_max_incomplete_event_size`), so the
headers of a request are also bounded here, with the same limit (431 and close beyond it).

The settings reach the protocol through the environment (`REQUEST_TIMEOUT_ENV`, `MAX_HEADER_BYTES_ENV`),
set by `tgms webhook`, because uvicorn's worker processes (`--workers N`) get only its own Config.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_ENV = "TGMS_WEBHOOK_REQUEST_TIMEOUT"
MAX_HEADER_BYTES_ENV = "TGMS_WEBHOOK_MAX_HEADER_BYTES"
DEFAULT_REQUEST_TIMEOUT = 10.0
DEFAULT_MAX_HEADER_BYTES = 64 * 1024

_TOO_LARGE_BODY = b"request headers too large"
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_TOO_LARGE_BODY), _TOO_LARGE_BODY)
)


class Counters:
    """Process-wide counts for /metrics (the protocol has no access to the app's runtime)."""

    timed_out = 0
    headers_too_large = 0


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        return default
    return value if value > 0 else default


class DeadlineHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol whose requests must arrive whole within a deadline (module docstring).

    Only `data_received` is overridden (with connection_made/lost): after each chunk is parsed, the
    request's state is read from what uvicorn keeps anyway (a new `scope` per request begun, a `cycle`
    per request whose headers are in, `more_body` until its body is). Overriding the parser's
    per-request callbacks as well cost about a microsecond per request more, measured."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._request_timeout = _env_number(REQUEST_TIMEOUT_ENV, DEFAULT_REQUEST_TIMEOUT)
        self._max_header_bytes = int(_env_number(MAX_HEADER_BYTES_ENV, DEFAULT_MAX_HEADER_BYTES))
        self._deadline: float | None = None  # loop time by which the request must be in; None: not timed
        self._timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0

    # Arming and disarming only set a time: a timer per request (call_later + cancel) cost more than
    # the rest of the guard together. One timer per connection checks the deadline when it fires and,
    # if a later request moved it, sleeps again until then.
    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.time() + self._request_timeout
            if self._timer is None:
                self._timer = self.loop.call_later(self._request_timeout, self._check)

    def _check(self) -> None:
        self._timer = None
        if self._deadline is None or self.transport.is_closing():
            return
        remaining = self._deadline - self.loop.time()
        if remaining > 0:
            self._timer = self.loop.call_later(remaining, self._check)
            return
        self._deadline = None
        Counters.timed_out += 1
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "?"
        log.info("closed a connection from %s: no whole request within %gs", client, self._request_timeout)
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte is timed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        scope_before = self.scope
        super().data_received(data)
        scope, cycle = self.scope, self.cycle
        if scope is None:  # not even a request line yet (the connection's own deadline runs)
            self._header_bytes += len(data)
        elif cycle is not None and cycle.scope is scope:  # the current request's headers are in
            if cycle.more_body:
                self._arm()
            else:
                self._deadline = None  # received whole: the response is not timed
            return
        else:  # a request's head, still incomplete
            self._arm()
            if scope is not scope_before:  # begun in this chunk, which may end the previous request
                self._header_bytes = 0
                return
            self._header_bytes += len(data)
        # So the bound is the limit plus at most one read.
        if self._header_bytes > self._max_header_bytes and not self.transport.is_closing():
            Counters.headers_too_large += 1
            self._deadline = None
            self.transport.write(_TOO_LARGE)
            self.transport.close()
