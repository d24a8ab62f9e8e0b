"""The web control center's gate behind a reverse proxy and at its session limit, in process.

The aiohttp application is served on loopback as it would be on any address; the proxy is played by
the headers it sets (Host, X-Forwarded-Proto). Sessions run a stand-in command, since what is checked
here is who gets one, not the TUI (tests/tui/test_web.py drives the real one in a browser).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from asyncio.base_subprocess import BaseSubprocessTransport
from collections.abc import AsyncIterator

import aiohttp
from aiohttp.test_utils import TestServer
from textual_serve.download_manager import DownloadManager

from tgms_tui.commands.tui_web import SESSION_COOKIE, Session, WebControlCenter, WebOptions

TOKEN = "gate-token-Hn5Qe7Ws2Xc9Vb4"
# A session process that reads one byte (textual-serve's quit message) and exits.
STAND_IN = "exec head -c 1 >/dev/null"
PUBLIC = "tgms.example.com"


@contextlib.asynccontextmanager
async def serving(options: WebOptions) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    server = TestServer(WebControlCenter(options, STAND_IN).application(), host="127.0.0.1")
    await server.start_server()
    try:
        # unsafe=True: keep cookies of a server addressed by IP, as browsers do.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            yield f"http://127.0.0.1:{server.port}", http
    finally:
        await server.close()


async def test_behind_a_tls_proxy_the_page_uses_wss_on_the_public_name_and_a_secure_cookie() -> None:
    options = WebOptions(host="0.0.0.0", behind_proxy=True, token=TOKEN)
    proxied = {"Host": PUBLIC, "X-Forwarded-Proto": "https"}
    async with serving(options) as (base, http):
        async with http.get(f"{base}/?token={TOKEN}", headers=proxied, allow_redirects=False) as signed_in:
            assert signed_in.status == 303 and signed_in.headers["Location"] == "/"
            cookie = signed_in.cookies[SESSION_COOKIE]
            assert cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "Lax"
        async with http.get(f"{base}/", headers=proxied, cookies={SESSION_COOKIE: cookie.value}) as page:
            body = await page.text()
        assert page.status == 200
        assert f'data-session-websocket-url="wss://{PUBLIC}/ws"' in body
        assert page.headers["X-Frame-Options"] == "DENY" and page.headers["Cache-Control"] == "no-store"


async def test_behind_a_proxy_without_a_token_the_proxy_is_the_guard_and_origins_still_count() -> None:
    async with serving(WebOptions(host="0.0.0.0", behind_proxy=True)) as (base, http):
        async with http.get(f"{base}/", headers={"Host": PUBLIC}) as page:
            assert page.status == 200 and f"ws://{PUBLIC}/ws" in await page.text()
        for origin, host in ((f"https://{PUBLIC}", PUBLIC), (f"https://{PUBLIC}:8443", f"{PUBLIC}:8443")):
            ws = await http.ws_connect(f"{base}/ws", headers={"Origin": origin, "Host": host})
            await ws.close()
        for origin, host in (("https://evil.example", PUBLIC), (f"https://{PUBLIC}:8443", f"{PUBLIC}:9443")):
            try:
                await http.ws_connect(f"{base}/ws", headers={"Origin": origin, "Host": host})
            except aiohttp.WSServerHandshakeError as refused:
                assert refused.status == 403
            else:
                raise AssertionError(f"a websocket from {origin} to {host} was accepted")


async def test_the_token_form_wants_this_servers_page_and_the_right_token() -> None:
    async with serving(WebOptions(token=TOKEN)) as (base, http):
        async with http.get(f"{base}/") as form:
            assert form.status == 401 and 'action="login"' in await form.text()
        foreign = {"Origin": "http://evil.example"}
        async with http.post(f"{base}/login", data={"token": TOKEN}, headers=foreign, allow_redirects=False) as r:
            assert r.status == 403 and SESSION_COOKIE not in r.cookies
        async with http.post(f"{base}/login", data={"token": TOKEN}, headers={"Origin": base}) as r:
            assert r.status == 200 and "textual.js" in await r.text()  # redirected to the control center
        async with http.get(f"{base}/logout") as r:
            assert r.status == 401  # signed out: back at the form
        ws_refused = False
        try:
            await http.ws_connect(f"{base}/ws")
        except aiohttp.WSServerHandshakeError as refused:
            ws_refused = refused.status == 401
        assert ws_refused


async def test_sessions_beyond_the_limit_are_refused() -> None:
    async with serving(WebOptions(max_sessions=1)) as (base, http):
        first = await http.ws_connect(f"{base}/ws")
        try:
            try:
                await http.ws_connect(f"{base}/ws")
            except aiohttp.WSServerHandshakeError as refused:
                assert refused.status == 503
            else:
                raise AssertionError("a second session opened with --max-sessions 1")
        finally:
            await first.close()
        # The first one's place is free again once its process has been told to quit.
        deadline = time.monotonic() + 20
        while True:
            try:
                second = await http.ws_connect(f"{base}/ws")
                break
            except aiohttp.WSServerHandshakeError as refused:
                assert refused.status == 503 and time.monotonic() < deadline
                await asyncio.sleep(0.1)
        await second.close()


def subprocess_transports() -> list[BaseSubprocessTransport]:
    return [o for o in gc.get_objects() if isinstance(o, BaseSubprocessTransport)]


async def test_a_stopped_session_leaves_its_process_reaped_and_its_transport_closed() -> None:
    """Else the transport is closed by its finaliser, which fails ("Event loop is closed") when it runs
    after the loop has gone: a warning in whichever test is running then."""

    async def ignore(*_: object) -> None:
        return None

    before = {id(t) for t in subprocess_transports()}
    session = Session(STAND_IN, write_bytes=ignore, write_str=ignore, close=ignore, download_manager=DownloadManager())
    await session.start(80, 24)
    with contextlib.suppress(asyncio.CancelledError):  # textual-serve's output reader, cut at once
        await session.stop()
    left_open = [t for t in subprocess_transports() if id(t) not in before and not t.is_closing()]
    assert left_open == []
