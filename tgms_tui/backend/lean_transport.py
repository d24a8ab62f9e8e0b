"""A lean HTTP/1.1 keep-alive transport for httpx, for the Bot API's small JSON calls.

Why: httpx's default transport (httpcore + anyio) costs a worker several times the CPU the call
needs. bench/transport_bench.py measures it, same simulator and calls side by side: on a 2-core
machine, CPU per Bot API call through the workers' client was 0.8-0.9 ms with httpx's transport one
call at a time and 1.4-1.6 ms with 16 in flight, against 0.3-0.4 ms with this one (2.4-5.6x less,
plain HTTP or TLS alike; the client layers above any transport take 0.12 ms of it). A TGMS worker
approving join requests or sending a broadcast spends most of its CPU there, so this transport is
what lets one process keep up with 100 approvals a second.

It lives in the backend because two roles use it: the workers' Bot API client and the long-polling
intake's getUpdates client (webhook_server/getupdates.py), whose approval latency it halved compared
with httpx's transport on a loaded 2-core machine. `proxy_applies` says when not to use it.

It plugs in under `httpx.AsyncClient(transport=...)`, so the Bot API client above it (and its error
mapping) is unchanged. It keeps httpx's contract where the client relies on it: the same timeout
keys, and the same exception classes at the same moments — failures before the request was fully
written are ConnectError / ConnectTimeout / WriteError / WriteTimeout / PoolTimeout (Telegram never saw
it), failures after are ReadTimeout / ReadError / RemoteProtocolError (it may have acted).

Scope: one request per connection at a time, Content-Length or chunked responses, `Connection: close`
honoured, idle connections dropped when the server closed them or after `keepalive_expiry`. No HTTP/2
and no compression (no Accept-Encoding is sent), and no proxies: an httpx client given a transport
ignores HTTPS_PROXY and friends, so workers/bots.py uses httpx's own transport when one applies.
TLS verifies the certificate and the host name with httpx's default context (certifi, or
SSL_CERT_FILE/SSL_CERT_DIR) unless an `ssl_context` is given.

A response body is read into memory whole, so its size is bounded (`max_response_bytes`): a larger
one fails with `ResponseTooLarge` as soon as its size is known (a Content-Length over the limit, or
chunks / an unframed body reaching it), and the connection is dropped. `TGMS_HTTP_TRANSPORT=httpx`
swaps this transport for httpx's own (workers/bots.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import urllib.request
from dataclasses import dataclass, field

import httpx

Origin = tuple[str, str, int]
_MAX_HEADER_BYTES = 64 * 1024
# Bot API answers are small JSON: the calls TGMS makes return well under 100 KB, and the largest
# any method can return (getUpdates at its 100-update maximum, each a long message quoting another)
# stays around a few MB. 8 MiB leaves room for that while a broken or hostile server (or a captive
# portal answering for api.telegram.org) cannot make a worker buffer an arbitrary amount.
DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024
_READ_PIECE = 64 * 1024
# Request headers httpx adds that this transport handles itself or must not send.
_DROPPED = frozenset({b"accept-encoding", b"connection", b"content-length", b"transfer-encoding", b"host"})


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = field(default_factory=time.monotonic)

    def usable(self, expiry: float) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing() and time.monotonic() - self.idle_since < expiry

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class ResponseTooLarge(httpx.RemoteProtocolError):
    """The response body exceeds the transport's `max_response_bytes`. The request was sent, so (like
    any failure after that point) the server may have acted on it."""


class LeanTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over asyncio streams with a keep-alive pool per origin."""

    def __init__(
        self,
        *,
        max_connections: int = 100,
        keepalive_expiry: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        if max_response_bytes < 1:
            raise ValueError(f"max_response_bytes must be >= 1, got {max_response_bytes}")
        self._max = max_connections
        self._expiry = keepalive_expiry
        self._ssl = ssl_context
        self._max_body = max_response_bytes
        self._idle: dict[Origin, list[_Connection]] = {}
        self._slots: asyncio.Semaphore | None = None
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise httpx.ConnectError("transport closed", request=request)
        timeouts = request.extensions.get("timeout", {})
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported scheme {scheme!r}", request=request)
        origin: Origin = (scheme, url.host, url.port or (443 if scheme == "https" else 80))
        body = await request.aread()
        head = _request_head(request, origin, len(body))
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max)
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no free connection slot", request=request) from None
        try:
            return await self._exchange(request, origin, head + body, timeouts)
        finally:
            self._slots.release()

    async def _exchange(
        self, request: httpx.Request, origin: Origin, payload: bytes, timeouts: dict[str, float | None]
    ) -> httpx.Response:
        conn, reused = self._take_idle(origin), True
        if conn is None:
            conn, reused = await self._connect(request, origin, timeouts.get("connect")), False
        keep = False
        try:
            try:
                conn.writer.write(payload)
                async with asyncio.timeout(timeouts.get("write")):
                    await conn.writer.drain()
            except TimeoutError:
                raise httpx.WriteTimeout("timed out sending the request", request=request) from None
            except OSError as exc:
                raise httpx.WriteError(f"sending the request failed: {type(exc).__name__}", request=request) from None
            try:
                async with asyncio.timeout(timeouts.get("read")):
                    status, headers, content, keep = await _read_response(conn.reader, request.method, self._max_body)
            except TimeoutError:
                raise httpx.ReadTimeout("timed out waiting for the response", request=request) from None
            except asyncio.IncompleteReadError as exc:
                if not exc.partial and reused:
                    raise httpx.RemoteProtocolError(
                        "server closed the kept-alive connection without sending a response", request=request
                    ) from None
                raise httpx.ReadError("connection closed in the middle of the response", request=request) from None
            except _TooLarge as exc:
                raise ResponseTooLarge(str(exc), request=request) from None
            except _Malformed as exc:
                raise httpx.RemoteProtocolError(str(exc), request=request) from None
            except OSError as exc:
                raise httpx.ReadError(f"reading the response failed: {type(exc).__name__}", request=request) from None
        finally:
            if keep and not self._closed:
                conn.idle_since = time.monotonic()
                self._idle.setdefault(origin, []).append(conn)
            else:
                conn.close()
        return httpx.Response(
            status, headers=headers, content=content, request=request, extensions={"http_version": b"HTTP/1.1"}
        )

    def _take_idle(self, origin: Origin) -> _Connection | None:
        pool = self._idle.get(origin)
        while pool:
            conn = pool.pop()  # most recently used first: least likely to have been closed
            if conn.usable(self._expiry):
                return conn
            conn.close()
        return None

    async def _connect(self, request: httpx.Request, origin: Origin, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        context: ssl.SSLContext | None = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = httpx.create_ssl_context()
            context = self._ssl
        try:
            opening = asyncio.open_connection(
                host, port, ssl=context, server_hostname=host if context else None, limit=_MAX_HEADER_BYTES
            )
            async with asyncio.timeout(timeout):
                reader, writer = await opening
        except TimeoutError:
            raise httpx.ConnectTimeout("timed out connecting", request=request) from None
        except ssl.SSLCertVerificationError as exc:
            # Says which check failed (untrusted issuer, host name mismatch); names only the host.
            raise httpx.ConnectError(f"TLS certificate rejected: {exc.verify_message}", request=request) from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"connecting failed: {type(exc).__name__}", request=request) from None
        return _Connection(reader, writer)

    async def aclose(self) -> None:
        self._closed = True
        for pool in self._idle.values():
            for conn in pool:
                conn.close()
        self._idle.clear()


class _Malformed(Exception):
    pass


class _TooLarge(Exception):
    pass


def _request_head(request: httpx.Request, origin: Origin, length: int) -> bytes:
    scheme, host, port = origin
    default_port = 443 if scheme == "https" else 80
    target = request.url.raw_path or b"/"
    lines = [
        request.method.encode() + b" " + target + b" HTTP/1.1",
        b"Host: " + (host if port == default_port else f"{host}:{port}").encode("idna"),
    ]
    for name, value in request.headers.raw:
        if name.lower() not in _DROPPED:
            lines.append(name + b": " + value)
    if length or request.method not in ("GET", "HEAD"):
        lines.append(b"Content-Length: " + str(length).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def _read_response(
    reader: asyncio.StreamReader, method: str, max_body: int
) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
    """(status, headers, body, keep-alive) of one response; a body over `max_body` bytes is refused."""
    while True:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise _Malformed("response headers too large") from None
        lines = raw[:-4].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise _Malformed("not an HTTP/1.x response")
        status = int(parts[1])
        if 100 <= status < 200:
            continue  # an interim response (e.g. 100 Continue): the real one follows
        break
    headers: list[tuple[bytes, bytes]] = []
    length: int | None = None
    chunked = False
    close = parts[0] == b"HTTP/1.0"
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise _Malformed("malformed response header")
        name, value = name.strip(), value.strip()
        headers.append((name, value))
        key = name.lower()
        if key == b"content-length":
            if not value.isdigit():
                raise _Malformed("bad Content-Length")
            length = int(value)
        elif key == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif key == b"connection":
            tokens = {t.strip() for t in value.lower().split(b",")}
            if b"close" in tokens:
                close = True
            elif b"keep-alive" in tokens:
                close = False
    if method == "HEAD" or status in (204, 304):
        return status, headers, b"", not close
    if chunked:
        body = await _read_chunked(reader, max_body)
        headers = [(n, v) for n, v in headers if n.lower() != b"transfer-encoding"]
    elif length is not None:
        if length > max_body:
            raise _TooLarge(f"response body of {length} bytes (Content-Length) exceeds the {max_body}-byte limit")
        body = await reader.readexactly(length)
    else:
        body, close = await _read_to_eof(reader, max_body), True  # framed by the end of the connection
    return status, headers, body, not close


def _too_large(max_body: int) -> _TooLarge:
    return _TooLarge(f"response body exceeds the {max_body}-byte limit")


async def _read_to_eof(reader: asyncio.StreamReader, max_body: int) -> bytes:
    out = bytearray()
    while piece := await reader.read(_READ_PIECE):
        out += piece
        if len(out) > max_body:
            raise _too_large(max_body)
    return bytes(out)


async def _read_chunked(reader: asyncio.StreamReader, max_body: int) -> bytes:
    out = bytearray()
    try:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _Malformed("bad chunk size") from None
            if size == 0:
                trailers = 0  # discarded, but bounded like the body
                while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                    trailers += len(line)
                    if trailers > _MAX_HEADER_BYTES:
                        raise _Malformed("response trailers too large")
                return bytes(out)
            if len(out) + size > max_body:
                raise _too_large(max_body)
            out += await reader.readexactly(size)
            if await reader.readexactly(2) != b"\r\n":
                raise _Malformed("chunk not terminated by CRLF")
    except asyncio.LimitOverrunError:
        raise _Malformed("chunk size line too long") from None


def proxy_applies(url: str) -> bool:
    """Whether a proxy variable (HTTPS_PROXY, ALL_PROXY, ... minus NO_PROXY) covers `url`'s host:
    httpx ignores them for a client given its own transport, so such a client must use httpx's."""
    parsed = httpx.URL(url)
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(parsed.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(parsed.host)  # NO_PROXY
