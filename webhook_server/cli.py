"""`tgms webhook` / `python -m webhook_server`: serve the webhook and admin API under uvicorn.

Everything that can be refused is checked before anything starts: the settings (the webhook secret,
and a wildcard proxy trust `*` together with a source allow-list: access.py says why), then the port
(bound here, so "in use" is one line rather than uvicorn's seven), and only then the database (the
embedded PostgreSQL may start) and the server. Slow clients are bounded by slow_clients.py (whole
request within `--request-timeout`, headers within 64 KiB) and by uvicorn's `limit_concurrency`
(connections plus requests in progress; beyond it new requests are answered 503 at once).
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys

import uvicorn

from tgms_tui.backend.bootstrap import prepare
from tgms_tui.backend.config import ConfigError, Settings, load_settings, proxy_addresses
from tgms_tui.backend.entrypoint import Terminated

from .access import check_proxy_trust
from .app import INSECURE_ENV, create_app, require_secret
from .slow_clients import DEFAULT_MAX_HEADER_BYTES, REQUEST_TIMEOUT_ENV, DeadlineHttpToolsProtocol

KEEP_ALIVE_SECONDS = 5  # uvicorn's default; Telegram reuses its connections well within it


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    parser.add_argument("--workers", type=int, default=1, help="server processes (default 1); metrics are per process")
    parser.add_argument(
        "--forwarded-allow-ips",
        default=None,
        metavar="IPS",
        help="addresses or networks of the reverse proxies whose X-Forwarded-For is believed "
        "(comma-separated; default FORWARDED_ALLOW_IPS, else none: proxy headers are ignored). "
        "The client is the right-most address in X-Forwarded-For that is not one of them. "
        "'*' is refused together with TGMS_ADMIN_ALLOW_NETWORKS or TGMS_METRICS_ALLOW_NETWORKS",
    )
    parser.add_argument(
        "--limit-concurrency",
        type=int,
        default=None,
        metavar="N",
        help="connections plus requests in progress per process before new requests get 503 "
        "(default TGMS_WEBHOOK_LIMIT_CONCURRENCY, else 1000)",
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="time a client has to send a whole request (headers and body) before it is disconnected "
        "(default TGMS_WEBHOOK_REQUEST_TIMEOUT, else 10)",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request (costly at high rates)")
    parser.add_argument(
        "--insecure-no-secret",
        action="store_true",
        help="run without TGMS_WEBHOOK_SECRET (anyone could post fake updates): local tests only",
    )


class PortUnavailable(Exception):
    """The address cannot be listened on; the message says why and what to do."""


def listen_socket(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port), or PortUnavailable naming the address and the fix."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        hint = ""
        if exc.errno == errno.EADDRINUSE:
            hint = ": another process listens there (stop it, or choose another --port)"
        elif exc.errno == errno.EACCES:
            hint = ": ports below 1024 need privileges (choose another --port)"
        elif exc.errno == errno.EADDRNOTAVAIL:
            hint = ": no such address on this machine (check --host)"
        raise PortUnavailable(f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}") from None
    except (socket.gaierror, OverflowError) as exc:
        sock.close()
        raise PortUnavailable(f"cannot listen on {host}:{port}: {exc}") from None
    return sock


def run(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise ConfigError("--workers", "must be >= 1")
    settings = load_settings()
    require_secret(settings, allow_insecure=args.insecure_no_secret)
    # Checked before the port and the database are touched: a refused configuration costs nothing.
    if args.forwarded_allow_ips is not None:
        proxies = proxy_addresses("--forwarded-allow-ips", args.forwarded_allow_ips)
    else:
        proxies = settings.forwarded_allow_ips
    check_proxy_trust(settings, proxies)
    limit = settings.webhook_limit_concurrency if args.limit_concurrency is None else args.limit_concurrency
    if limit < 1:
        raise ConfigError("--limit-concurrency", "must be >= 1")
    timeout = settings.webhook_request_timeout if args.request_timeout is None else args.request_timeout
    if not timeout > 0:
        raise ConfigError("--request-timeout", "must be > 0")
    # The protocol reads its deadline from the environment: uvicorn's worker processes inherit it.
    os.environ[REQUEST_TIMEOUT_ENV] = repr(float(timeout))
    try:
        sock = listen_socket(args.host, args.port)
    except PortUnavailable as exc:
        print(f"tgms webhook: {exc}", file=sys.stderr)
        return 1
    try:
        return _serve(args, settings, sock, proxies, limit)
    finally:
        sock.close()


def _serve(
    args: argparse.Namespace, settings: Settings, sock: socket.socket, proxies: tuple[str, ...], limit: int
) -> int:
    settings, url = prepare(settings)  # logging with redaction, database, migrations
    options = {
        "log_config": None,  # keep our logging (secrets redacted) instead of uvicorn's
        "access_log": args.access_log,
        "proxy_headers": bool(proxies),
        "forwarded_allow_ips": list(proxies) or None,
        "http": DeadlineHttpToolsProtocol,
        "limit_concurrency": limit,
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        "h11_max_incomplete_event_size": DEFAULT_MAX_HEADER_BYTES,  # only if h11 were used; see slow_clients
        "timeout_graceful_shutdown": 10,
        "log_level": settings.log_level.lower(),
    }
    if args.workers == 1:
        app = create_app(settings, url, allow_insecure=args.insecure_no_secret)
        server = uvicorn.Server(uvicorn.Config(app, **options))
        try:
            server.run(sockets=[sock])
        except (Terminated, KeyboardInterrupt):
            # uvicorn stopped gracefully on SIGTERM or Ctrl-C, then raised the signal again: a clean stop.
            return 0
        if not server.started:
            print("tgms webhook: the server did not start (see the log lines above)", file=sys.stderr)
            return 1
        return 0
    # Fail here, once, rather than in every spawned worker.
    create_app(settings, url, allow_insecure=args.insecure_no_secret)
    # Workers are new interpreters: hand them the database this process resolved (the embedded
    # server included) and the insecure opt-in through the environment. uvicorn binds its own
    # socket for them: ours has proved the port free.
    os.environ["DATABASE_URL"] = url
    if args.insecure_no_secret:
        os.environ[INSECURE_ENV] = "1"
    sock.close()
    try:
        uvicorn.run(
            "webhook_server.app:app_from_env",
            factory=True,
            workers=args.workers,
            host=args.host,
            port=args.port,
            **options,
        )
    except Terminated:  # (uvicorn.run itself treats Ctrl-C as a clean stop)
        return 0
    return 0
