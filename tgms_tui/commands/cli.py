"""The `tgms` command: the one place that knows every role.

Each subcommand lives in its role's module, which provides `add_arguments(parser)` and
`run(args) -> int`; only the chosen subcommand's module is imported, so `tgms worker` never loads
Textual. Every failure prints one clear line and exits non-zero, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
from collections.abc import Sequence
from typing import Protocol, cast

from tgms_tui.backend.entrypoint import run_entry_point


class Subcommand(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


# name -> (module providing add_arguments/run, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("tgms_tui.demo.supervisor", "the whole system live: simulator, webhook, workers and the TUI"),
    "tui": ("tgms_tui.commands.tui", "the live control center (Textual)"),
    "webhook": ("webhook_server.cli", "serve the Telegram webhook and admin API (uvicorn)"),
    "poll": ("webhook_server.poll", "long-poll Telegram for updates instead of a webhook (no public address needed)"),
    "worker": ("workers.cli", "run a worker: 'main' (regular updates) or 'tgms' (group management)"),
    "sim": ("telegram_sim.cli", "run the Telegram Bot API simulator"),
    "migrate": ("tgms_tui.commands.db", "apply pending database migrations"),
    "db": ("tgms_tui.commands.db", "database helpers: 'url' prints the URL in use, 'stop' stops the embedded one"),
    "set-webhook": (
        "tgms_tui.commands.set_webhook",
        "point each bot's Telegram webhook at this server (--delete, --info)",
    ),
    "doctor": ("tgms_tui.commands.doctor", "check configuration, database, tokens, webhooks and group rights"),
    "groups": ("tgms_tui.commands.groups", "managed groups: list, add (checked with Telegram), set, remove, release"),
    "broadcast": ("tgms_tui.commands.broadcast", "send, list, show, edit or cancel broadcasts"),
    "ban": ("tgms_tui.commands.bans", "ban a user in every managed group (the fleet's ban list)"),
    "unban": ("tgms_tui.commands.bans", "lift a user's fleet ban everywhere"),
    "bans": ("tgms_tui.commands.bans", "the fleet's ban list: 'list', 'show USER_ID'"),
    "links": ("tgms_tui.commands.bans", "named invite links: 'create', 'list' (requests, joins, retention), 'revoke'"),
    "stats": ("tgms_tui.commands.stats", "charts' figures per group or for the fleet over 24h/7d/30d (--json, --csv)"),
    "hooks": (
        "tgms_tui.commands.hooks",
        "event webhooks: add (prints the secret once), list, remove, pause, resume, test, replay, log",
    ),
    "jobs": ("tgms_tui.commands.jobs", "list, cancel (even while running) or retry jobs"),
    "join-requests": ("tgms_tui.commands.join_requests", "the join-request queue: list, approve, decline; raid"),
}


def version() -> str:
    """The installed package's version (a source checkout run without installing says so)."""
    try:
        return importlib.metadata.version("tgms")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def _load(name: str) -> Subcommand:
    module = importlib.import_module(SUBCOMMANDS[name][0])
    specific = getattr(module, f"command_{name.replace('-', '_')}", None)
    return cast(Subcommand, specific if specific is not None else module)


def build_parser(selected: str | None) -> tuple[argparse.ArgumentParser, Subcommand | None]:
    parser = argparse.ArgumentParser(prog="tgms", description="TGMS: Telegram Group Management System.")
    parser.add_argument("--version", action="version", version=f"tgms {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen: Subcommand | None = None
    for name, (_module, help_text) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if name == selected:
            chosen = _load(name)
            chosen.add_arguments(sp)
    return parser, chosen


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in argv if not a.startswith("-")), None)
    if selected not in SUBCOMMANDS:
        selected = None
    return run_entry_point(lambda: _run(argv, selected), "tgms", selected)


def _run(argv: list[str], selected: str | None) -> int:
    parser, command = build_parser(selected)
    prepare_argv = getattr(command, "prepare_argv", None)  # a subcommand that reads argv its own way
    args = parser.parse_args(prepare_argv(argv) if prepare_argv else argv)
    if command is None:
        parser.print_help()
        return 2
    return int(command.run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
