"""`tgms sim` / `python -m telegram_sim`: run the Bot API simulator as a standalone server.

Bots are the tokens in BOT_TOKEN and TGMS_BOT_TOKEN (environment, else `.env`) plus every
--bot-token; with none, one bot is generated and its token printed once at start (it is the
operator's own fake token). Tokens are never logged otherwise (uvicorn's access log, which would show
request URLs, is off).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import uvicorn

from telegram_sim.app import create_app
from telegram_sim.config import SimConfig
from telegram_sim.scenario import populate
from telegram_sim.state import SimError, SimState, token_is_well_formed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8081, help="port to listen on (default 8081)")
    parser.add_argument("--webhook-url", help="set every bot's webhook to this URL ({bot_id}, {bot_username} "
                        "are replaced)")  # fmt: skip
    parser.add_argument("--secret", help="secret_token sent as X-Telegram-Bot-Api-Secret-Token with --webhook-url")
    parser.add_argument("--groups", type=int, default=5, help="ready-made groups to create (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed for ids, names and sizes (default 0)")
    parser.add_argument("--bot-token", action="append", default=[], metavar="T",
                        help="serve this bot token (repeatable; BOT_TOKEN and TGMS_BOT_TOKEN are added)")  # fmt: skip
    parser.add_argument("--no-flood-limits", action="store_true", help="never answer 429 for flood control")
    parser.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")


def _environment() -> dict[str, str]:
    """os.environ over the working directory's `.env` (real variables win), like the other roles."""
    values: dict[str, str] = {}
    if Path(".env").is_file():
        try:
            from tgms_tui.backend.config import read_dotenv
        except ImportError:  # the simulator also runs without the rest of TGMS
            pass
        else:
            values.update(read_dotenv(Path(".env")))
    values.update(os.environ)
    return values


def build_state(args: argparse.Namespace) -> tuple[SimState, bool] | int:
    """The world `tgms sim` serves (bots, ready-made groups, webhooks) and whether its bot token
    was generated; or an exit code after printing one line on stderr."""
    tokens: list[str] = []
    env = _environment()
    for source, value in (("BOT_TOKEN", env.get("BOT_TOKEN")), ("TGMS_BOT_TOKEN", env.get("TGMS_BOT_TOKEN"))):
        if value and value.strip():
            if not token_is_well_formed(value.strip()):
                print(f"tgms sim: {source} is not a well-formed bot token (<id>:<secret>)", file=sys.stderr)
                return 2
            tokens.append(value.strip())
    for index, value in enumerate(args.bot_token, 1):
        if not token_is_well_formed(value.strip()):
            print(f"tgms sim: --bot-token #{index} is not a well-formed bot token (<id>:<secret>)", file=sys.stderr)
            return 2
        tokens.append(value.strip())
    if args.secret is not None and not args.webhook_url:
        print("tgms sim: --secret needs --webhook-url", file=sys.stderr)
        return 2
    state = SimState(SimConfig(enforce_flood_limits=not args.no_flood_limits), seed=args.seed)
    try:
        for token in dict.fromkeys(tokens):
            state.add_bot(token)
        if not tokens:
            state.add_bot()
        populate(state, max(args.groups, 0), args.seed)
        if args.webhook_url:
            for bot in state.bots.values():
                url = args.webhook_url.replace("{bot_id}", str(bot.id)).replace("{bot_username}", bot.username)
                state.set_webhook(bot.id, url, secret_token=args.secret)
    except SimError as exc:
        print(f"tgms sim: {exc}", file=sys.stderr)
        return 2
    return state, not tokens


def print_banner(state: SimState, base: str, generated: bool) -> None:
    print(f"Telegram Bot API simulator on {base}  (TELEGRAM_API_BASE={base}, control API {base}/_sim/)")
    for bot in state.bots.values():
        hook = f", webhook {bot.webhook.url}" if bot.webhook.url else ""
        print(f"  bot @{bot.username} id {bot.id}{hook}")
        if generated:
            print(f"  generated bot token (fake, for this simulator only): {bot.token}")
    for chat in state.chats.values():
        print(f"  {chat.type:<10} {chat.id:>15}  {chat.member_count:>4} members  {chat.title}")
    sys.stdout.flush()


def run(args: argparse.Namespace) -> int:
    built = build_state(args)
    if isinstance(built, int):
        return built
    state, generated = built
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        sock.close()
        hint = " (another process listens there: stop it, or choose another --port)"
        print(
            f"tgms sim: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
            + (hint if exc.errno == errno.EADDRINUSE else ""),
            file=sys.stderr,
        )
        return 1
    print_banner(state, f"http://{args.host}:{args.port}", generated)
    config = uvicorn.Config(create_app(state), log_level=args.log_level, access_log=False)
    with sock, _sigterm_exits_cleanly():
        try:
            uvicorn.Server(config).run(sockets=[sock])
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise
    return 0


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


@contextlib.contextmanager
def _sigterm_exits_cleanly() -> Iterator[None]:
    """SIGTERM is the simulator's normal stop: uvicorn shuts down gracefully on it and then raises the
    signal again for the previous handler, which by default would end the process as killed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m telegram_sim", description="Telegram Bot API simulator")
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except KeyboardInterrupt:
        return 130
