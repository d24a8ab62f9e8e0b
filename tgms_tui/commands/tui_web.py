"""`tgms tui --web`: the same control center in a browser, served by textual-serve.

textual-serve is an aiohttp app: its page runs xterm.js, and each websocket it accepts starts one
process with a shell command line (`python -m tgms_tui [--read-only]`) whose terminal the browser
then shows. So that command line holds no secret (it is visible in the process list): a session's
process reads the database settings from the environment and `.env` as `tgms tui` does. The web
token is removed from the environment those processes inherit: they never need it.

Who may open a session:
- Loopback only by default. A browser page from any other site could open a websocket to a port on
  127.0.0.1 and type into the TUI, so every websocket must come from the server's own origin, and
  (no token, not behind a proxy) the Host header must name a loopback address: a DNS-rebound name
  is refused.
- Any other address needs a token (TGMS_WEB_TOKEN or --token-file: never on the command line) that
  the browser presents once, through the form or `?token=` (then redirected away from the URL), in
  exchange for a session cookie; or `--behind-proxy`, the operator's word that an authenticating
  reverse proxy (deploy/nginx/tgms-tui-web.conf, deploy/caddy/Caddyfile.tui-web) is in front.
Without a valid session neither the page nor the websocket answers, and no process is started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
import shlex
import signal
import sys
import time
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler
from textual_serve.app_service import AppService
from textual_serve.server import Server, to_int

from tgms_tui.backend.config import ENV_NAMES, ConfigError, Settings, web_token
from tgms_tui.backend.redaction import register_secrets

log = logging.getLogger("tgms.tui_web")

TOKEN_VARIABLE = ENV_NAMES["web_token"]
SESSION_COOKIE = "tgms_web_session"
SESSION_SECONDS = 12 * 3600
QUIT_SECONDS = 10.0  # a session process told to quit gets this long before it is killed
TITLE = "TGMS control center"
PAGES = Path(__file__).with_name("web_pages")
# Token checks go through one gate, one at a time, and a wrong token holds it this long: at most one
# guess a second from everyone together, however many connections a guesser opens.
WRONG_TOKEN_DELAY = 1.0
# Checks waiting at the gate beyond this are refused at once (429), unchecked.
TOKEN_QUEUE_LIMIT = 8
# Every response: never cached, never framed (a framed TUI can be tricked into key presses), and a
# link followed from it does not carry its URL along.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
}


@dataclass(frozen=True)
class WebOptions:
    """How `tgms tui --web` serves: where, who may in, and what each session runs."""

    host: str = "127.0.0.1"
    port: int = 8090
    read_only: bool = False
    refresh: float = 2.0
    token: str | None = field(default=None, repr=False)
    behind_proxy: bool = False
    max_sessions: int = 8

    def title(self) -> str:
        return f"{TITLE} (read-only)" if self.read_only else TITLE


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or `localhost`) is reachable from this machine only."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None, behind_proxy: bool) -> None:
    """Refuse to serve the control center beyond this machine with nothing guarding it."""
    if is_loopback(host) or token or behind_proxy:
        return
    raise ConfigError(
        "--host",
        f"{host} is reachable from other machines, and the control center changes data: set "
        f"{TOKEN_VARIABLE} (or --token-file) so a browser must present a token, or put an "
        "authenticating reverse proxy in front and pass --behind-proxy (deploy/nginx/tgms-tui-web.conf)",
    )


def read_token(token_file: Path | None, settings: Settings) -> str | None:
    """The token from --token-file (first line), else TGMS_WEB_TOKEN, else None."""
    if token_file is None:
        return settings.web_token
    try:
        lines = token_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("--token-file", f"cannot read {token_file}: {exc.__class__.__name__}") from None
    if token_file.stat().st_mode & 0o077:
        log.warning("--token-file %s can be read by other users: chmod 600 it", token_file)
    return web_token("--token-file", lines[0].strip() if lines else "")


def session_command(read_only: bool, refresh: float) -> str:
    """The command line of one browser session's TUI process: options only, never a secret.
    textual-serve runs it through a shell; `exec` leaves one process per session, not two."""
    argv = [sys.executable, "-m", "tgms_tui", "--refresh", f"{refresh:g}"]
    if read_only:
        argv.append("--read-only")
    return "exec " + shlex.join(argv)


def _same_token(given: str, token: str) -> bool:
    """Constant time, also in the length (digests of equal size are compared)."""
    return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), hashlib.sha256(token.encode()).digest())


class TokenGate:
    """Rate-limits token guesses overall, not per request: a delay answered after each wrong guess
    would let a guesser send many at once and learn the right one without waiting. Here checks
    run one at a time and a wrong one keeps the gate closed for `delay`, so the whole server
    answers at most one wrong guess per `delay`; a queue beyond `limit` is refused unchecked."""

    def __init__(self, token: str, delay: float = WRONG_TOKEN_DELAY, limit: int = TOKEN_QUEUE_LIMIT) -> None:
        self._token = token
        self._delay = delay
        self._limit = limit
        self._lock = asyncio.Lock()
        self._waiting = 0

    async def check(self, given: str) -> bool | None:
        """True for the right token, False for a wrong one, None when too many checks wait."""
        if self._waiting >= self._limit:
            return None
        self._waiting += 1
        try:
            async with self._lock:
                if _same_token(given, self._token):
                    return True
                await asyncio.sleep(self._delay)
                return False
        finally:
            self._waiting -= 1


class Sessions:
    """Session cookies handed out for the token; in memory, so a restart signs everyone out."""

    def __init__(self, lifetime: float = SESSION_SECONDS) -> None:
        self.lifetime = lifetime
        self._expiry: dict[str, float] = {}

    def issue(self) -> str:
        now = time.monotonic()
        self._expiry = {key: until for key, until in self._expiry.items() if until > now}
        key = secrets.token_urlsafe(32)
        self._expiry[key] = now + self.lifetime
        return key

    def valid(self, key: str | None) -> bool:
        if not key:
            return False
        until = self._expiry.get(key)
        return until is not None and until > time.monotonic()

    def end(self, key: str | None) -> None:
        if key:
            self._expiry.pop(key, None)


class PathOnlyAccessLogger(AbstractAccessLogger):
    """One line per request without its query string, where a `?token=` would be."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %s %.0fms", request.remote, request.method, request.path, response.status, time * 1000
        )


def _host_and_port(host_header: str) -> tuple[str, int | None]:
    """`Host: name[:port]` (IPv6 in brackets) as (lower-case name without brackets, port or None)."""
    parts = urlsplit(f"//{host_header}")
    try:
        port = parts.port
    except ValueError:
        port = -1  # unparsable: matches no origin
    return (parts.hostname or "").lower(), port


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, **SECURITY_HEADERS})


def _page(name: str, **values: str) -> str:
    """A page from web_pages/ with every value HTML-escaped."""
    text = (PAGES / name).read_text(encoding="utf-8")
    return Template(text).substitute({key: escape(value, quote=True) for key, value in values.items()})


class Session(AppService):
    """textual-serve's session process, reaped when it stops. textual-serve tells the process to quit
    and reads its output to the end, but never closes its stdin nor waits for its exit: asyncio then
    never closes the process's transport, and the transport's finaliser fails ("Event loop is closed")
    once the loop is gone."""

    async def stop(self) -> None:
        try:
            await super().stop()
        finally:
            await self.reap()

    async def reap(self) -> None:
        """Close the process's stdin and await its exit (killed after QUIT_SECONDS); again after a
        cancelled reap, nothing once done."""
        process = self._process
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), QUIT_SECONDS)
        except TimeoutError:
            process.kill()
            await process.wait()
        self._process = None


class WebControlCenter:
    """The aiohttp application: textual-serve's websocket and static files behind TGMS's gate."""

    def __init__(self, options: WebOptions, command: str) -> None:
        self.options = options
        # textual-serve's Server is used for its websocket message pump (browser -> session process)
        # and its static files; its own page and routes are not served, sessions are ours (Session).
        self.serve = Server(command, host=options.host, port=options.port, title=options.title())
        self.sessions = Sessions()
        self.token_gate = TokenGate(options.token) if options.token else None
        self.live: set[asyncio.Task[Any]] = set()
        self.unreaped: set[Session] = set()  # sessions whose process is not reaped yet

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self.gate])
        app.add_routes(
            [
                web.get("/", self.index),
                web.get("/ws", self.websocket),
                web.post("/login", self.login),
                web.get("/logout", self.logout),
                web.static("/static", self.serve.statics_path, show_index=False),
            ]
        )
        app.on_shutdown.append(self.end_sessions)
        return app

    # ------------------------------------------------------------------ the gate

    @web.middleware
    async def gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self._host_allowed(request):
            return self._refuse(421, "this server answers to its loopback address only")
        if self.options.token and request.path != "/login":
            given = request.query.get("token")
            if given is not None:
                return await self._token_in_url(request, given)
            if not self.sessions.valid(request.cookies.get(SESSION_COOKIE)):
                if request.path == "/":
                    return self._token_form(401, "")
                return self._refuse(401, "sign in first: open / and enter the access token")
        response = await handler(request)
        if not response.prepared:
            response.headers.update(SECURITY_HEADERS)
        return response

    def _host_allowed(self, request: web.Request) -> bool:
        """Against DNS rebinding: unguarded on loopback, the server answers loopback names only."""
        if self.options.token or self.options.behind_proxy or not is_loopback(self.options.host):
            return True
        return is_loopback(_host_and_port(request.host)[0])

    def _same_origin(self, request: web.Request) -> bool:
        """A browser names the page that opens a websocket or sends a form: it must be this server's
        own (the Host it was asked for; behind a proxy, the Host the proxy passes on)."""
        origin = request.headers.get("Origin")
        if origin is None:  # not a browser: nothing to hijack (the token still applies)
            return True
        parts = urlsplit(origin)
        host, port = _host_and_port(request.host)
        if parts.hostname is None or parts.hostname.lower() != host:
            return False
        try:
            origin_port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
        except ValueError:
            return False
        return port is None or origin_port == port  # a proxy may pass the Host on without its port

    async def _token_in_url(self, request: web.Request, given: str) -> web.StreamResponse:
        """`?token=` once: a session cookie, then the same address without the token."""
        refused = await self._check_token(request, given)
        if refused is not None:
            return refused
        response = _see_other(str(request.rel_url.without_query_params("token")))
        self._start_session(request, response)
        return response

    async def _check_token(self, request: web.Request, given: object) -> web.StreamResponse | None:
        """None for the right token, else the answer to send (403 wrong, 429 too many guesses)."""
        assert self.token_gate is not None
        verdict = await self.token_gate.check(given) if isinstance(given, str) else False
        if verdict:
            return None
        if verdict is None:
            log.warning("web token check refused (too many waiting) from %s", request.remote)
            response = self._token_form(429, "Too many sign-in attempts at once; try again in a few seconds.")
            response.headers["Retry-After"] = "5"
            return response
        log.warning("wrong web token from %s", request.remote)
        return self._token_form(403, "That token is not right.")

    def _start_session(self, request: web.Request, response: web.StreamResponse) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            self.sessions.issue(),
            max_age=SESSION_SECONDS,
            path="/",
            httponly=True,
            samesite="Lax",
            secure=self._https(request),
        )
        response.headers.update(SECURITY_HEADERS)

    def _https(self, request: web.Request) -> bool:
        if self.options.behind_proxy:
            return request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0].strip() == "https"
        return request.secure

    def _token_form(self, status: int, problem: str) -> web.Response:
        body = _page("token.html", title=self.options.title(), problem=problem)
        return web.Response(status=status, text=body, content_type="text/html", headers=SECURITY_HEADERS)

    @staticmethod
    def _refuse(status: int, reason: str) -> web.Response:
        return web.Response(status=status, text=f"{reason}\n", headers=SECURITY_HEADERS)

    # ------------------------------------------------------------------ routes

    async def login(self, request: web.Request) -> web.StreamResponse:
        if not self.options.token:
            return _see_other("/")
        if not self._same_origin(request):
            return self._refuse(403, "the form must be sent from this server's own page")
        form = await request.post()
        refused = await self._check_token(request, form.get("token"))
        if refused is not None:
            return refused
        response = _see_other("/")
        self._start_session(request, response)
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        self.sessions.end(request.cookies.get(SESSION_COOKIE))
        response = _see_other("/")
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    async def index(self, request: web.Request) -> web.Response:
        scheme = "wss" if self._https(request) else "ws"
        host = request.host
        font_size = request.query.get("fontsize", "16")
        body = _page(
            "app_index.html",
            title=self.options.title(),
            static_url="/static/",
            websocket_url=f"{scheme}://{host}/ws",
            font_size=font_size if font_size.isdigit() and 6 <= int(font_size) <= 48 else "16",
        )
        return web.Response(text=body, content_type="text/html")

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        if not self._same_origin(request):
            log.warning("websocket from another site's page refused (Origin %s)", request.headers.get("Origin"))
            return self._refuse(403, "a session opens from this server's own page only")
        if len(self.live) >= self.options.max_sessions:
            return self._refuse(503, f"{self.options.max_sessions} sessions are open already (--max-sessions)")
        task = asyncio.current_task()
        assert task is not None
        self.live.add(task)
        log.info("session opened from %s (%d open)", request.remote, len(self.live))
        try:
            return await self._run_session(request)
        finally:
            self.live.discard(task)
            log.info("session closed (%d open)", len(self.live))

    async def _run_session(self, request: web.Request) -> web.WebSocketResponse:
        """textual-serve's websocket handler with a `Session`: the process is fed until either side
        ends (or the server shuts down), then told to quit and reaped."""
        websocket = web.WebSocketResponse(heartbeat=15)
        width, height = to_int(request.query.get("width", "80"), 80), to_int(request.query.get("height", "24"), 24)

        async def close() -> None:
            await websocket.close()

        session: Session | None = None
        try:
            await websocket.prepare(request)
            session = Session(
                self.serve.command, write_bytes=websocket.send_bytes, write_str=websocket.send_str, close=close,
                download_manager=self.serve.download_manager,
            )  # fmt: skip
            self.unreaped.add(session)
            await session.start(width, height)
            await self.serve._process_messages(websocket, session)
        except asyncio.CancelledError:  # shutting down (end_sessions): the session ends as below
            await websocket.close()
        except Exception:
            log.exception("session failed")
        finally:
            if session is not None:
                await session.stop()  # a cancellation (end_sessions) may cut it: end_sessions reaps then
                self.unreaped.discard(session)
        return websocket

    async def end_sessions(self, app: web.Application) -> None:
        """On shutdown each session's TUI is told to quit (textual-serve does it on cancel)."""
        for task in list(self.live):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self.live, return_exceptions=True)
        for session in list(self.unreaped):
            await session.reap()
        self.unreaped.clear()


async def serve(options: WebOptions, command: str, started: asyncio.Event | None = None) -> None:
    """Serve until SIGTERM or SIGINT; then every session's process is told to quit and awaited."""
    center = WebControlCenter(options, command)
    runner = web.AppRunner(center.application(), access_log_class=PathOnlyAccessLogger, handle_signals=False)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, options.host, options.port)
        await site.start()
        port = _bound_port(site) or options.port
        host = f"[{options.host}]" if ":" in options.host else options.host
        guard = "token required" if options.token else ("behind a proxy" if options.behind_proxy else "loopback only")
        mode = ", read-only" if options.read_only else ""
        print(f"tgms tui --web: serving the control center on http://{host}:{port}/ ({guard}{mode})", flush=True)
        if started is not None:
            started.set()
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()


def _bound_port(site: web.TCPSite) -> int | None:
    server = site._server  # aiohttp keeps the listening server here; the port matters when 0 was asked
    sockets = getattr(server, "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else None


def web_options(args: argparse.Namespace, settings: Settings) -> WebOptions:
    """The --web flags checked together (each error names its flag)."""
    port = 8090 if args.port is None else int(args.port)
    if not 0 <= port <= 65535:
        raise ConfigError("--port", f"must be 0-65535, got {port}")
    sessions = 8 if args.max_sessions is None else int(args.max_sessions)
    if sessions < 1:
        raise ConfigError("--max-sessions", f"must be at least 1, got {sessions}")
    host = args.host or "127.0.0.1"
    token = read_token(args.token_file, settings)
    check_exposure(host, token, bool(args.behind_proxy))
    return WebOptions(
        host=host,
        port=port,
        read_only=bool(args.read_only),
        refresh=max(0.5, float(args.refresh)),
        token=token,
        behind_proxy=bool(args.behind_proxy),
        max_sessions=sessions,
    )


def run(options: WebOptions) -> int:
    """Serve the control center; the database was prepared by the caller (and stays joined)."""
    # The sessions' processes inherit this environment: the token is not theirs to know. Wherever it
    # came from (--token-file too), no log line of this process may show it.
    os.environ.pop(TOKEN_VARIABLE, None)
    if options.token:
        register_secrets([options.token])
    asyncio.run(serve(options, session_command(options.read_only, options.refresh)))
    return 0
