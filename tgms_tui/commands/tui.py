"""`tgms tui [--read-only]` and `python -m tgms_tui`: the live control center."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tgms_tui.backend.entrypoint import run_entry_point


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
    app.run()
    return int(app.return_code or 0)


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
