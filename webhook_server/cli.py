"""`tgms webhook` / `python -m webhook_server`: serve the webhook and admin API under uvicorn."""

from __future__ import annotations

import argparse
import os

import uvicorn

from tgms_tui.backend.bootstrap import prepare
from tgms_tui.backend.config import ConfigError

from .app import INSECURE_ENV, create_app


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    parser.add_argument("--workers", type=int, default=1, help="server processes (default 1); metrics are per process")
    parser.add_argument(
        "--forwarded-allow-ips",
        default=None,
        metavar="IPS",
        help="trust X-Forwarded-For from these proxy addresses (comma-separated, or '*'); "
        "needed behind a reverse proxy for the TGMS_ADMIN_ALLOW_NETWORKS allow-list. "
        "Default: proxy headers are ignored",
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
    settings, url = prepare()  # settings, logging with redaction, database, migrations
    options = {
        "host": args.host,
        "port": args.port,
        "log_config": None,  # keep our logging (secrets redacted) instead of uvicorn's
        "access_log": args.access_log,
        "proxy_headers": args.forwarded_allow_ips is not None,
        "forwarded_allow_ips": args.forwarded_allow_ips,
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
