"""The webhook POST client against hand-written HTTP servers: framing, keep-alive and failures."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import pytest

from telegram_sim.webhook_http import DeliveryError, WebhookPoster
from tests.support import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[bool]]


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes] | None:
    line = await reader.readline()
    if not line:
        return None
    headers = {}
    while (header := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = header.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return line.decode().strip(), headers, body


async def _serve(handler: Handler) -> tuple[asyncio.Server, str, list[tuple[str, dict[str, str], bytes]]]:
    seen: list[tuple[str, dict[str, str], bytes]] = []
    connections = 0

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        number = connections
        while (request := await _read_request(reader)) is not None:
            seen.append(request)
            if not await handler(reader, writer, number):
                break
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/hook?bot=1", seen


async def test_request_shape_keep_alive_and_chunked_answers() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")  # fmt: skip
        await writer.drain()
        return True

    server, url, seen = await _serve(handler)
    poster = WebhookPoster(timeout=5)
    try:
        for update_id in (1, 2):
            body = json.dumps({"update_id": update_id}).encode()
            result = await poster.post(url, body, {"Content-Type": "application/json", "X-Secret": "s"}, 5)
            assert (result.status, result.body) == (200, b"hello world")
        line, headers, body = seen[0]
        assert line == "POST /hook?bot=1 HTTP/1.1"
        assert headers["content-type"] == "application/json" and headers["x-secret"] == "s"
        assert headers["host"] == url.split("/")[2] and json.loads(body) == {"update_id": 1}
        assert len(seen) == 2
    finally:
        await poster.aclose()
        server.close()


async def test_idle_connection_closed_by_the_server_is_replaced() -> None:
    connections: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: int) -> bool:
        connections.append(conn)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        return False  # close after each answer, without saying so

    server, url, _ = await _serve(handler)
    poster = WebhookPoster(timeout=5)
    try:
        for _ in range(3):
            assert (await poster.post(url, b"{}", {}, 5)).status == 200
            await asyncio.sleep(0.05)
        assert connections == [1, 2, 3]
    finally:
        await poster.aclose()
        server.close()


async def test_retry_after_header_and_close_delimited_body() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: int) -> bool:
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nConnection: close\r\n\r\nbusy")
        await writer.drain()
        return False

    server, url, _ = await _serve(handler)
    poster = WebhookPoster(timeout=5)
    try:
        result = await poster.post(url, b"{}", {}, 5)
        assert (result.status, result.headers["retry-after"], result.body) == (503, "7", b"busy")
    finally:
        await poster.aclose()
        server.close()


async def test_failures_use_telegrams_wording() -> None:
    poster = WebhookPoster(timeout=5)

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: int) -> bool:
        await asyncio.sleep(0.5)
        return False

    server, url, _ = await _serve(silent)
    try:
        with pytest.raises(DeliveryError, match=r"^Connection refused$"):
            await poster.post(f"http://127.0.0.1:{free_port()}/", b"{}", {}, 5)
        with pytest.raises(DeliveryError, match=r"^Read timeout expired$"):
            await poster.post(url, b"{}", {}, 0.2)

        async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: int) -> bool:
            return False  # closes without answering

        rude, rude_url, _ = await _serve(hang_up)
        with pytest.raises(DeliveryError, match=r"^Connection reset by peer$"):
            await poster.post(rude_url, b"{}", {}, 5)
        rude.close()
    finally:
        await poster.aclose()
        server.close()
