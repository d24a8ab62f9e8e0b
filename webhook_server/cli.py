"""`tgms webhook` / `python -m webhook_server`: serve the webhook and admin API under uvicorn.

Start-up refuses what would make the server unsafe to expose: no webhook secret (unless asked for
explicitly), and a wildcard proxy trust (`*`) together with a source allow-list (access.py says why).
Slow clients are bounded by slow_clients.py (whole request within `--request-timeout`, headers within
64 KiB) and by uvicorn's `limit_concurrency` (connections plus requests in progress; beyond it new
requests are answered 503 at once).
"""

from __future__ import annotations

import argparse
import os

import uvicorn

from tgms_tui.backend.bootstrap import prepare
from tgms_tui.backend.config import ConfigError, load_settings, proxy_addresses

from .access import check_proxy_trust
from .app import INSECURE_ENV, create_app
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


def run(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise ConfigError("--workers", "must be >= 1")
    settings = load_settings()
    # Checked before the database is touched: a refused configuration costs nothing.
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
    settings, url = prepare(settings)  # logging with redaction, database, migrations
    # The protocol reads its deadline from the environment: uvicorn's worker processes inherit it.
    os.environ[REQUEST_TIMEOUT_ENV] = repr(float(timeout))
    options = {
        "host": args.host,
        "port": args.port,
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
        uvicorn.run(app, **options)
        return 0
    # Fail here, once, rather than in every spawned worker.
    create_app(settings, url, allow_insecure=args.insecure_no_secret)
    # Workers are new interpreters: hand them the database this process resolved (the embedded
    # server included) and the insecure opt-in through the environment.
    os.environ["DATABASE_URL"] = url
    if args.insecure_no_secret:
        os.environ[INSECURE_ENV] = "1"
    uvicorn.run("webhook_server.app:app_from_env", factory=True, workers=args.workers, **options)
    return 0
