"""`tgms tui [--read-only] [--web ...]` and `python -m tgms_tui`: the live control center, in this
terminal or (--web, tgms_tui/commands/tui_web.py) in a browser."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from tgms_tui.backend.config import ConfigError
from tgms_tui.backend.entrypoint import Terminated, run_entry_point

if TYPE_CHECKING:
    from textual.app import App


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--read-only",
        action="store_true",
        help="watch only: every action that changes data (broadcasts, group and job actions) is hidden and refused",
    )
    parser.add_argument(
        "--refresh",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="periodic refresh in seconds besides change notifications (default 2)",
    )
    web = parser.add_argument_group("in a browser")
    web.add_argument(
        "--web",
        action="store_true",
        help="serve the control center to browsers (textual-serve); each browser session runs its own TUI process",
    )
    web.add_argument("--host", help="address to listen on (default 127.0.0.1; another needs a token or --behind-proxy)")
    web.add_argument("--port", type=int, help="port to listen on (default 8090; 0 picks a free one)")
    web.add_argument(
        "--token-file",
        type=Path,
        metavar="PATH",
        help="file whose first line is the access token browsers must present (instead of TGMS_WEB_TOKEN)",
    )
    web.add_argument(
        "--behind-proxy",
        action="store_true",
        help="an authenticating reverse proxy (TLS and a login) is in front: allows another --host without a token",
    )
    web.add_argument(
        "--max-sessions",
        type=int,
        metavar="N",
        help="browser sessions at once, each a TUI process with its own database connections (default 8)",
    )


WEB_ONLY = ("host", "port", "token_file", "behind_proxy", "max_sessions")


def run(args: argparse.Namespace) -> int:
    if getattr(args, "web", False):
        return _run_web(args)
    for flag in WEB_ONLY:
        if getattr(args, flag, None) not in (None, False):
            raise ConfigError(f"--{flag.replace('_', '-')}", "only applies together with --web")

    from tgms_tui.backend.bootstrap import prepare

    # The screen is the TUI's output: log lines would tear it, so they go to a file instead.
    settings, url = prepare(logging_on=False)
    # The database password joins the redacted secrets: a driver error may quote the URL, and the
    # TUI shows database errors (in a browser session too).
    secrets = [*settings.secrets(), *filter(None, [database_password(url)])]
    _log_to_file(settings.data_dir / "tui.log", settings.log_level, secrets)

    from tgms_tui.app import TGMSApp

    refresh = max(0.5, float(args.refresh))
    app = TGMSApp(url=url, settings=settings, read_only=bool(args.read_only), refresh_period=refresh)
    with _quit_on_sigterm(app):
        app.run()
    return int(app.return_code or 0)


def database_password(url: str) -> str | None:
    """The password in a PostgreSQL URL or key=value connection string, if any."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        value = conninfo_to_dict(url).get("password")
    except Exception:  # unparsable: psycopg itself will say so, without our help
        return None
    return str(value) if value else None


def _run_web(args: argparse.Namespace) -> int:
    """Check the flags, then the database (a session that cannot reach it would only show an error),
    then serve. The server holds the embedded PostgreSQL, when that is in use, while it runs."""
    from tgms_tui.backend.bootstrap import prepare
    from tgms_tui.backend.config import load_settings

    try:
        from tgms_tui.commands import tui_web
    except ModuleNotFoundError as exc:
        raise ConfigError("--web", f"needs textual-serve ({exc}): pip install 'tgms[web]'") from None
    settings = load_settings()
    options = tui_web.web_options(args, settings)
    prepare(settings)
    return tui_web.run(options)


@contextlib.contextmanager
def _quit_on_sigterm(app: App[Any]) -> Iterator[None]:
    """SIGTERM quits the app as `q` does (the terminal restored, the database released), exit 0.
    The handler runs on the main thread, which is the app's event loop's: it hands the exit to the
    loop rather than running it in the middle of whatever the loop was doing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # before the app started or after it ended
            raise Terminated(signum) from None
        loop.call_soon_threadsafe(app.exit)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _log_to_file(path: Path, level: str, secrets: list[str]) -> None:
    from tgms_tui.backend.redaction import install_log_redaction

    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level, logging.INFO))
    for noisy in ("httpx", "httpcore", "pgserver", "psycopg.pool"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    install_log_redaction(secrets)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tgms_tui", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_entry_point(lambda: run(args), "tgms tui")
