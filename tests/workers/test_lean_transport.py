"""The lean httpx transport against real sockets: framing, keep-alive, and httpx's exception contract
(which decides whether a failed Bot API call may have reached Telegram)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from telegram_sim.server import SimServer
from tgms_tui.backend.lean_transport import DEFAULT_MAX_RESPONSE_BYTES, LeanTransport, ResponseTooLarge
from workers.telegram_api import HideRequesterMissing, NetworkError, TelegramClient, TimedOut

Reply = Callable[[bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]


@asynccontextmanager
async def raw_server(reply: Reply) -> AsyncIterator[tuple[str, dict[str, object]]]:
    """A bare HTTP/1.1 server: `reply(request_head, reader, writer)` answers; False closes the connection."""
    stats: dict[str, object] = {"connections": 0, "heads": []}

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stats["connections"] = int(stats["connections"]) + 1  # type: ignore[call-overload]
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length")), 0)  # fmt: skip
                await reader.readexactly(length)
                stats["heads"].append(head)  # type: ignore[attr-defined]
                if not await reply(head, reader, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", stats
    finally:
        server.close()


def ok(body: bytes = b'{"ok":true,"result":1}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + extra + \
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body  # fmt: skip


async def test_keep_alive_and_framing() -> None:
    async def reply(head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        if b"/chunked" in head:
            chunks = b'5\r\n{"ok"\r\n8;ext=1\r\n:true,"r\r\n9\r\nesult":2}\r\n0\r\nX-Trailer: 1\r\n\r\n'
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)
        else:
            writer.write(ok())
        await writer.drain()
        return True

    async with raw_server(reply) as (url, stats), httpx.AsyncClient(transport=LeanTransport()) as http:
        for _ in range(5):
            response = await http.post(f"{url}/bot1:x/getMe", json={"a": 1})
            assert response.status_code == 200 and response.json() == {"ok": True, "result": 1}
        chunked = await http.post(f"{url}/chunked", json={})
        assert chunked.json() == {"ok": True, "result": 2}
        assert stats["connections"] == 1  # one kept-alive connection for all six
        head = stats["heads"][0]  # type: ignore[index]
        assert head.startswith(b"POST /bot1:x/getMe HTTP/1.1\r\n")
        assert b"\r\nHost: 127.0.0.1:" in head and b"Content-Length: 7\r\n" in head
        assert b"accept-encoding" not in head.lower()


async def test_connection_close_and_server_closed_idle_connections_open_fresh_ones() -> None:
    count = 0

    async def reply(head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        nonlocal count
        count += 1
        if count == 1:
            writer.write(ok(extra=b"Connection: close\r\n"))
            await writer.drain()
            return False
        writer.write(ok())
        await writer.drain()
        return False  # closes after answering, without saying so (an idle timeout on the server)

    async with raw_server(reply) as (url, stats), httpx.AsyncClient(transport=LeanTransport()) as http:
        for _ in range(3):
            assert (await http.post(url, json={})).status_code == 200
            await asyncio.sleep(0.05)  # the event loop sees the server's FIN
        assert stats["connections"] == 3


async def test_failures_map_to_httpx_exceptions_by_whether_the_request_left() -> None:
    async def reply(head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        if b"/slow" in head:
            await asyncio.sleep(2)
        elif b"/cut" in head:
            writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"ok"')
            await writer.drain()
            return False
        writer.write(ok())
        await writer.drain()
        return True

    timeout = httpx.Timeout(connect=1.0, read=0.2, write=1.0, pool=1.0)
    async with raw_server(reply) as (url, _), httpx.AsyncClient(transport=LeanTransport(), timeout=timeout) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(f"{url}/slow", json={})
        with pytest.raises(httpx.ReadError):
            await http.post(f"{url}/cut", json={})
        assert (await http.post(url, json={})).status_code == 200  # the pool recovered
    async with httpx.AsyncClient(transport=LeanTransport()) as http:
        with pytest.raises(httpx.ConnectError):
            await http.post("http://127.0.0.1:9/", json={})  # nothing listens on the discard port


async def test_responses_over_the_size_limit_are_refused_not_buffered() -> None:
    """An endless or oversized body fails as soon as its size passes the limit, however it is framed."""
    piece = b"x" * 65536

    async def reply(head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        if b"/announced" in head:  # says 1 GiB up front, then streams without end
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n")
        elif b"/chunked" in head:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            piece_framed = b"10000\r\n" + piece + b"\r\n"
            while True:
                writer.write(piece_framed)
                await writer.drain()
        elif b"/unframed" in head:  # neither length nor chunks: the body ends with the connection
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        elif b"/exact" in head:
            writer.write(ok(b"y" * 1000))
            await writer.drain()
            return True
        else:
            writer.write(ok())
            await writer.drain()
            return True
        while True:
            writer.write(piece)
            await writer.drain()

    # A generous read timeout: reaching it instead of the size error would mean the body was being read.
    timeout = httpx.Timeout(30.0)
    async with raw_server(reply) as (url, stats), httpx.AsyncClient(transport=LeanTransport(), timeout=timeout) as http:
        for path in ("/announced", "/chunked", "/unframed"):
            with pytest.raises(ResponseTooLarge, match=f"exceeds the {DEFAULT_MAX_RESPONSE_BYTES}-byte limit"):
                await http.post(f"{url}{path}", json={})
        assert (await http.post(url, json={})).json() == {"ok": True, "result": 1}
        assert stats["connections"] == 4  # each refused response's connection was dropped, not reused

    small = LeanTransport(max_response_bytes=1000)
    async with raw_server(reply) as (url, _), httpx.AsyncClient(transport=small, timeout=timeout) as http:
        assert len((await http.post(f"{url}/exact", json={})).content) == 1000  # the limit itself is allowed
        with pytest.raises(ResponseTooLarge, match="exceeds the 1000-byte limit"):
            await http.post(f"{url}/chunked", json={})
        # Through the Bot API client: a network error that may have been delivered (the request was sent).
        token = "7000000003:AAtest_lean_transport_size_token"
        tg = TelegramClient(token, api_base=url, http_client=http)
        with pytest.raises(NetworkError, match="ResponseTooLarge") as too_large:
            await tg.call("announced")
        assert too_large.value.maybe_delivered and token not in str(too_large.value)
    with pytest.raises(ValueError, match="max_response_bytes"):
        LeanTransport(max_response_bytes=0)


async def test_the_bot_api_client_on_it_against_the_simulator() -> None:
    token = "7000000001:AAtestlean_transport_token_xx"
    with SimServer(bots=[token]) as sim:
        chat = sim.state.create_chat("supergroup", "G")
        async with httpx.AsyncClient(transport=LeanTransport()) as http:
            client = TelegramClient(token, api_base=sim.base_url, http_client=http)
            assert (await client.get_me())["id"] == 7000000001
            user = sim.state.create_user("Ann")
            with pytest.raises(HideRequesterMissing):
                await client.approve_chat_join_request(chat.id, user.id)
        sim.control.add_fault("hang", method="getChat", seconds=1.0, apply=True)
        async with httpx.AsyncClient(transport=LeanTransport(), timeout=0.3) as http:
            slow = TelegramClient(token, api_base=sim.base_url, http_client=http)
            with pytest.raises(TimedOut) as timed_out:
                await slow.get_chat(chat.id)
            assert timed_out.value.maybe_delivered  # the request was sent: it may have taken effect
        async with httpx.AsyncClient(transport=LeanTransport()) as http:
            nowhere = TelegramClient(token, api_base="http://127.0.0.1:9", http_client=http)
            with pytest.raises(NetworkError) as refused:
                await nowhere.get_me()
            assert not refused.value.maybe_delivered
