"""`tgms tui --web`: the control center in a browser, and the gate in front of it.

The server runs as users run it (a `tgms tui --web` process on a seeded database); each browser
session is then a TUI process of its own. The gate is checked from outside with an HTTP client; the
page itself in a real headless Chromium (tests/tui/browser.py), which reads what xterm.js shows.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import psutil
import pytest
from yarl import URL

from tests.support import free_port, poll_until, stop_processes, wait_until
from tests.token_guard import register_secret
from tgms_tui.backend.config import ConfigError, Settings
from tgms_tui.commands.tui import database_password
from tgms_tui.commands.tui_web import TokenGate, check_exposure, is_loopback, read_token, session_command

from .browser import Page, chromium, install_chromium

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "web-token-Zq8vL2mN4pR7sT1w"
SCREENSHOT = ROOT / "docs" / "images" / "tui-web.png"
# A browser test takes ~6 s (each wait polls for up to 40 s on a loaded machine); the first one may
# also install Chromium, apt-get update and install at most 240 s each.
BROWSER_TEST_SECONDS = 600
# Set to write the browser's screenshot into docs/ (the picture docs/tui.md shows).
UPDATE_SCREENSHOT = "TGMS_UPDATE_SCREENSHOTS"


def with_password(url: str, password: str) -> tuple[str, str]:
    """`url` with a password in it (the test server trusts local logins, so any will do), and the
    password the URL then carries: the secret the web pages must never show."""
    parts = urlsplit(url)
    if parts.password:
        return url, parts.password
    user = parts.username or "postgres"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"{user}:{password}@{host}", parts.path, parts.query, parts.fragment)), password


@dataclass
class WebServer:
    proc: subprocess.Popen[bytes]
    base: str
    log: Path
    db_password: str

    def sessions(self) -> list[psutil.Process]:
        """The server's TUI session processes (each `python -m tgms_tui`, maybe under a shell)."""
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return [p for p in children if _alive(p)]


def _alive(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start_server(tmp_path: Path, url: str, *args: str) -> Iterator[WebServer]:
    db_url, password = with_password(url, "pw-Uo3Kx9Vb")
    register_secret(password)
    env = {k: v for k, v in os.environ.items() if k not in ("TGMS_WEB_TOKEN", "DATABASE_URL")}
    env.update(DATABASE_URL=db_url, TGMS_DATA_DIR=str(tmp_path / "data"), TGMS_LOG_LEVEL="INFO")
    port = free_port()
    log = tmp_path / "tgms-web.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tgms_tui", "--web", "--port", str(port), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=tmp_path,
        )
    server = WebServer(proc, f"http://127.0.0.1:{port}", log, password)
    try:
        poll_until(
            lambda: "serving the control center" in log.read_text() or proc.poll() is not None,
            timeout=60,
            what="tgms tui --web to serve",
            detail=log.read_text,
        )
        assert proc.poll() is None, log.read_text()
        yield server
    finally:
        stop_processes([proc])
        assert proc.returncode == 0, log.read_text()
        poll_until(lambda: not server.sessions(), timeout=20, what="the sessions to end with the server")


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    register_secret(TOKEN)
    path = tmp_path / "web-token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def guarded(tmp_path: Path, seeded_url: str, token_file: Path) -> Iterator[WebServer]:
    """A server on loopback that still wants the token (as it would on any address)."""
    yield from start_server(tmp_path, seeded_url, "--token-file", str(token_file))


@pytest.fixture
def open_loopback(tmp_path: Path, seeded_url: str) -> Iterator[WebServer]:
    yield from start_server(tmp_path, seeded_url)


@pytest.fixture
def read_only(tmp_path: Path, seeded_url: str) -> Iterator[WebServer]:
    yield from start_server(tmp_path, seeded_url, "--read-only")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path, why_not = install_chromium()
    if path is None:
        pytest.skip(f"no headless Chromium for the browser test: {why_not}")
    return path


async def has_session(server: WebServer) -> bool:
    return bool(server.sessions())


def ws_url(server: WebServer) -> str:
    return server.base.replace("http://", "ws://") + "/ws?width=120&height=40"


# unsafe=True: keep cookies of a server addressed by IP (127.0.0.1), as browsers do.
async def handshake_status(http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None) -> int:
    """The HTTP status a websocket handshake gets (101 when the session opened)."""
    try:
        ws = await http.ws_connect(url, headers=headers)
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status
    await ws.close()
    return 101


# ---------------------------------------------------------------------------- the rules, unit by unit


def test_loopback_is_the_default_and_anything_else_needs_a_guard() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("[::1]") and is_loopback("localhost")
    assert is_loopback("127.8.9.10")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("10.1.2.3")
    assert not is_loopback("tgms.example.com") and not is_loopback("localhost.example.com")
    check_exposure("127.0.0.1", None, False)
    check_exposure("0.0.0.0", TOKEN, False)
    check_exposure("0.0.0.0", None, True)
    with pytest.raises(ConfigError) as refused:
        check_exposure("0.0.0.0", None, False)
    assert refused.value.variable == "--host"
    assert "TGMS_WEB_TOKEN" in str(refused.value) and "--behind-proxy" in str(refused.value)


def test_the_token_comes_from_a_file_or_the_environment(tmp_path: Path, token_file: Path) -> None:
    assert read_token(None, Settings(web_token=TOKEN)) == TOKEN
    assert read_token(token_file, Settings(web_token="another-token-of-enough-length")) == TOKEN
    assert read_token(None, Settings()) is None
    short = tmp_path / "short"
    short.write_text("abc\n")
    with pytest.raises(ConfigError) as weak:
        read_token(short, Settings())
    assert weak.value.variable == "--token-file" and "abc" not in str(weak.value)
    with pytest.raises(ConfigError, match="--token-file: cannot read"):
        read_token(tmp_path / "missing", Settings())


def test_a_session_command_line_holds_options_only() -> None:
    command = session_command(read_only=True, refresh=2.0)
    assert command.endswith("-m tgms_tui --refresh 2 --read-only")
    assert "--read-only" not in session_command(read_only=False, refresh=2.0)


def test_the_tui_knows_the_database_password_to_redact_it() -> None:
    assert database_password("postgresql://tgms:p%40ss-word@db.example/tgms") == "p@ss-word"
    assert database_password("host=db.example password=kv-secret dbname=tgms") == "kv-secret"
    assert database_password("postgresql://tgms@db.example/tgms") is None


def test_the_cli_refuses_an_unguarded_public_address(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TGMS_WEB_TOKEN"}
    done = subprocess.run(
        [sys.executable, "-m", "tgms_tui", "--web", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--host: 0.0.0.0 is reachable from other machines" in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "tgms_tui", "--port", "8099"], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert done.returncode == 2 and "--port: only applies together with --web" in done.stderr


async def test_token_guesses_sent_at_once_are_answered_one_per_delay_overall() -> None:
    """Many wrong guesses in parallel gain nothing: each holds the gate for the delay, so the right
    token sent among them is only checked after the ones before it; a crowd beyond the queue limit is
    refused unchecked."""
    gate = TokenGate("the-right-token-123", delay=0.2, limit=4)
    started = time.monotonic()
    wrong = [asyncio.create_task(gate.check(f"guess-{i}")) for i in range(3)]
    await asyncio.sleep(0)  # the guesses queue first
    right = asyncio.create_task(gate.check("the-right-token-123"))
    await asyncio.sleep(0)
    crowd = await gate.check("one-too-many")
    assert crowd is None  # 4 already waiting: refused without a check
    assert await right is True
    assert time.monotonic() - started >= 3 * 0.2
    assert [await t for t in wrong] == [False, False, False]
    assert await gate.check("guess-again") is False


# ---------------------------------------------------------------------------- the gate, from outside


async def test_without_the_token_neither_the_page_nor_the_websocket_opens_a_session(guarded: WebServer) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(guarded.base + "/") as page:
            body = await page.text()
            assert page.status == 401
            assert 'name="token"' in body and "textual.js" not in body and "/ws" not in body
        async with http.get(guarded.base + "/static/js/textual.js") as script:
            assert script.status == 401
        assert await handshake_status(http, ws_url(guarded)) == 401
        forged = {"Cookie": "tgms_web_session=" + "A" * 43}
        assert await handshake_status(http, ws_url(guarded), headers=forged) == 401
        started = time.monotonic()
        async with http.get(guarded.base + "/?token=not-the-token-at-all", allow_redirects=False) as wrong:
            assert wrong.status == 403 and "not right" in await wrong.text()
        assert time.monotonic() - started >= 0.9  # a wrong token costs its sender a second
        async with http.post(guarded.base + "/login", data={"token": "not-the-token-at-all"}) as wrong:
            assert wrong.status == 403
        await asyncio.sleep(0.5)  # a session process would have been started by now
        assert guarded.sessions() == []
        assert http.cookie_jar.filter_cookies(URL(guarded.base)).get("tgms_web_session") is None

        # The same client with the token: the gate opens (so the refusals above were the gate's).
        async with http.get(guarded.base + f"/?token={TOKEN}&fontsize=15", allow_redirects=False) as signed_in:
            assert signed_in.status == 303
            assert signed_in.headers["Location"] == "/?fontsize=15"  # the token is gone from the address
        async with http.get(guarded.base + "/") as page:
            body = await page.text()
            assert page.status == 200 and "textual.js" in body and TOKEN not in body
            assert "<title>TGMS control center</title>" in body and guarded.db_password not in body
        # A page of another site cannot open a session with the operator's cookie.
        evil = {"Origin": "http://evil.example"}
        assert await handshake_status(http, ws_url(guarded), headers=evil) == 403
        ws = await http.ws_connect(ws_url(guarded), headers={"Origin": guarded.base})
        try:
            await wait_until(lambda: has_session(guarded), what="the session's TUI process")
        finally:
            await ws.close()
    log = guarded.log.read_text()
    assert TOKEN not in log and "token=" not in log  # the access log shows paths without queries


async def test_loopback_without_a_token_answers_loopback_names_only(open_loopback: WebServer) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(open_loopback.base + "/") as page:
            assert page.status == 200 and "textual.js" in await page.text()
        # DNS rebinding: a name that now points at 127.0.0.1, from a page of that name.
        async with http.get(open_loopback.base + "/", headers={"Host": "rebound.example:80"}) as rebound:
            assert rebound.status == 421
        evil = {"Origin": "http://evil.example"}
        assert await handshake_status(http, ws_url(open_loopback), headers=evil) == 403
        await asyncio.sleep(0.5)
        assert open_loopback.sessions() == []


async def test_stopping_the_server_quits_every_session(open_loopback: WebServer) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(ws_url(open_loopback), headers={"Origin": open_loopback.base})
        await wait_until(lambda: has_session(open_loopback), what="the session's TUI process")
        sessions = open_loopback.sessions()
        assert await ws.receive(timeout=30)  # the TUI draws: the session is up, not just started
        # Read on as a browser does (a client that stops reading holds up the websocket's close).
        reading = asyncio.create_task(_read_until_closed(ws))
        open_loopback.proc.terminate()  # SIGTERM, as systemd stops it, with the browser still connected
        # Waited for in a thread: the client must keep answering while the server closes its websocket.
        assert await asyncio.to_thread(open_loopback.proc.wait, 30) == 0, open_loopback.log.read_text()
        _gone, alive = await asyncio.to_thread(psutil.wait_procs, sessions, 20)
        assert alive == [], [p.cmdline() for p in alive]
        await asyncio.wait_for(reading, timeout=10)  # the server closed the websocket


async def _read_until_closed(ws: aiohttp.ClientWebSocketResponse) -> None:
    async for _message in ws:
        pass


# ---------------------------------------------------------------------------- in a real browser


def composer_shown(screen: str) -> bool:
    return "Review & send" in screen and "Parse mode" in screen


@pytest.fixture
async def browser(chromium_path: str, tmp_path: Path) -> AsyncIterator[Callable[[], Awaitable[Page]]]:
    async with chromium(chromium_path, tmp_path / "chromium-output.txt") as new_page:
        yield new_page


@pytest.mark.browser
@pytest.mark.timeout(BROWSER_TEST_SECONDS)
async def test_the_browser_shows_the_dashboard_and_opens_the_composer(
    guarded: WebServer, browser: Callable[[], Awaitable[Page]]
) -> None:
    page = await browser()
    await page.open(f"{guarded.base}/?token={TOKEN}")
    screen = await page.wait_for_screen(
        lambda text: "Alpha growers" in text and "Delta news" in text, what="the seeded groups on the dashboard"
    )
    assert "TGMS control center" in screen and "db ok" in screen

    # The address bar and the title carry neither the token nor the database's password.
    address = await page.evaluate("location.href")
    title = await page.evaluate("document.title")
    html = await page.evaluate("document.documentElement.outerHTML")
    assert address == f"{guarded.base}/" and title == "TGMS control center"
    for secret in (TOKEN, guarded.db_password):
        assert secret not in address and secret not in title and secret not in html and secret not in screen

    # One session: one TUI process, whose command line and environment hold no secret.
    await wait_until(lambda: has_session(guarded), what="the session's TUI process")
    for proc in guarded.sessions():
        assert TOKEN not in " ".join(proc.cmdline()) and guarded.db_password not in " ".join(proc.cmdline())
        assert "TGMS_WEB_TOKEN" not in proc.environ()
    if os.environ.get(UPDATE_SCREENSHOT):
        await page.screenshot(SCREENSHOT)
    await page.screenshot(guarded.log.with_name("dashboard.png"))

    await page.press("b")
    await page.wait_for_screen(composer_shown, what="the composer after pressing b")


@pytest.mark.browser
@pytest.mark.timeout(BROWSER_TEST_SECONDS)
async def test_read_only_reaches_the_browser_session(
    read_only: WebServer, browser: Callable[[], Awaitable[Page]]
) -> None:
    page = await browser()
    await page.open(read_only.base + "/")
    screen = await page.wait_for_screen(
        lambda text: "Alpha growers" in text and "READ-ONLY" in text, what="the read-only dashboard"
    )
    assert await page.evaluate("document.title") == "TGMS control center (read-only)"
    assert "b Broadcast" not in screen
    assert any("--read-only" in p.cmdline() for p in read_only.sessions())
    await page.press("b")
    await asyncio.sleep(1.0)  # a composer would be on the screen by now (it takes ~0.1 s)
    screen = await page.screen_text()
    assert not composer_shown(screen) and "Alpha growers" in screen
