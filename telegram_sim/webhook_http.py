"""The HTTP client that POSTs updates to webhooks: lean HTTP/1.1 keep-alive for http://, httpx for https://.

Why not httpx for everything: on the shared 2-core machines this project runs on, one httpx POST
costs several milliseconds of CPU (and it sends headers and body in separate writes, which costs a
TCP round-trip more), while a webhook delivery should add well under a millisecond to the
approval-latency path. Local receivers (tests, demo, benchmarks) speak plain http, so that path is a
small asyncio-streams client with a keep-alive pool per host; https (a real deployment behind TLS)
goes through one shared `httpx.AsyncClient`. Failures become `DeliveryError` carrying the wording
Telegram shows in getWebhookInfo.last_error_message.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

_MAX_HEADER_LINES = 100


class DeliveryError(Exception):
    """The webhook could not be reached or did not answer; `str()` is Telegram's wording."""


@dataclass
class PostResult:
    status: int
    headers: dict[str, str]
    body: bytes


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


class WebhookPoster:
    def __init__(self, timeout: float, max_idle_per_host: int = 100) -> None:
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._max_idle = max_idle_per_host
        self._timeout = timeout
        self._https: httpx.AsyncClient | None = None  # made on first https webhook (TLS setup is slow)

    async def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> PostResult:
        parts = urlsplit(url)
        if parts.scheme.lower() == "https":
            return await self._post_https(url, body, headers, timeout)
        host = parts.hostname or ""
        port = parts.port or 80
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = [f"POST {target} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        try:
            async with asyncio.timeout(timeout):
                return await self._exchange((host, port), request)
        except TimeoutError:
            raise DeliveryError("Read timeout expired") from None

    async def _exchange(self, key: tuple[str, int], request: bytes) -> PostResult:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            try:
                return await self._roundtrip(key, conn, request)
            except _StaleConnection:
                conn.close()  # the server closed an idle connection: try the next one / a new one
        conn = await self._connect(key)
        try:
            return await self._roundtrip(key, conn, request)
        except _StaleConnection:
            conn.close()
            raise DeliveryError("Connection reset by peer") from None

    async def _connect(self, key: tuple[str, int]) -> _Connection:
        try:
            reader, writer = await asyncio.open_connection(key[0], key[1])
        except ConnectionRefusedError:
            raise DeliveryError("Connection refused") from None
        except socket.gaierror:
            raise DeliveryError("Failed to resolve host: Name or service not known") from None
        except OSError as exc:
            raise DeliveryError(f"Connection error: {exc.strerror or type(exc).__name__}") from None
        return _Connection(reader, writer)

    async def _roundtrip(self, key: tuple[str, int], conn: _Connection, request: bytes) -> PostResult:
        answered = False
        try:
            conn.writer.write(request)
            status_line = await conn.reader.readline()
            if not status_line:
                raise _StaleConnection
            answered = True
            status, headers = await self._read_head(conn.reader, status_line)
            body, reusable = await self._read_body(conn.reader, headers)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            conn.close()
            if not answered and isinstance(exc, ConnectionError):
                raise _StaleConnection from None
            raise DeliveryError("Connection reset by peer") from None
        except BaseException:
            conn.close()  # timeout or cancellation mid-exchange: the connection state is unknown
            raise
        if reusable and headers.get("connection", "").lower() != "close":
            pool = self._idle.setdefault(key, [])
            if len(pool) < self._max_idle:
                pool.append(conn)
                return PostResult(status, headers, body)
        conn.close()
        return PostResult(status, headers, body)

    @staticmethod
    async def _read_head(reader: asyncio.StreamReader, status_line: bytes) -> tuple[int, dict[str, str]]:
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise ValueError("not an HTTP response")
        status = int(parts[1])
        headers: dict[str, str] = {}
        for _ in range(_MAX_HEADER_LINES):
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                return status, headers
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        raise ValueError("too many header lines")

    @staticmethod
    async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> tuple[bytes, bool]:
        """(body, whether the connection can carry another request)."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int((await reader.readline()).split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks), True
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
        if "content-length" in headers:
            return await reader.readexactly(int(headers["content-length"])), True
        return await reader.read(), False  # no framing: the body ends when the server closes

    async def _post_https(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> PostResult:
        if self._https is None:
            self._https = httpx.AsyncClient(
                timeout=self._timeout,
                limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200),
                trust_env=False,
            )
        try:
            response = await self._https.post(url, content=body, headers=headers, timeout=timeout)
        except httpx.TimeoutException:
            raise DeliveryError("Read timeout expired") from None
        except httpx.ConnectError:
            raise DeliveryError("Connection refused") from None
        except httpx.HTTPError as exc:
            raise DeliveryError(f"Connection error: {type(exc).__name__}") from None
        return PostResult(response.status_code, {k.lower(): v for k, v in response.headers.items()},
                          response.content)  # fmt: skip

    async def aclose(self) -> None:
        for pool in self._idle.values():
            for conn in pool:
                conn.close()
        self._idle.clear()
        if self._https is not None:
            await self._https.aclose()
            self._https = None


class _StaleConnection(Exception):
    """A kept-alive connection the server had closed before our request: safe to retry elsewhere."""
