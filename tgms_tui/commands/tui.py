"""`tgms tui [--read-only]` and `python -m tgms_tui`: the live control center."""

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


def run(args: argparse.Namespace) -> int:
    from tgms_tui.backend.bootstrap import prepare

    # The screen is the TUI's output: log lines would tear it, so they go to a file instead.
    settings, url = prepare(logging_on=False)
    _log_to_file(settings.data_dir / "tui.log", settings.log_level, settings.secrets())

    from tgms_tui.app import TGMSApp

    refresh = max(0.5, float(args.refresh))
    app = TGMSApp(url=url, settings=settings, read_only=bool(args.read_only), refresh_period=refresh)
    with _quit_on_sigterm(app):
        app.run()
    return int(app.return_code or 0)


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
