"""`tgms set-webhook`: point each configured bot's Telegram webhook at this server.

    tgms set-webhook --url https://bots.example.org     main bot -> /api/webhook, tgms bot -> /api/webhook/tgms
    tgms set-webhook --delete                            remove the webhooks
    tgms set-webhook --info                              show each bot's mode (webhook or long polling)

A bot is in one of two modes: webhook (Telegram posts to `tgms webhook`) or long polling (`tgms poll`
asks with getUpdates, which Telegram refuses while a webhook is set). Setting a webhook therefore
stops a running `tgms poll` for that bot; deleting it lets `tgms poll` run.

Both bots get the shared secret (TGMS_WEBHOOK_SECRET, sent back by Telegram in
X-Telegram-Bot-Api-Secret-Token) and an explicit `allowed_updates`: without it Telegram keeps the
previous list, and its default leaves out `chat_member`, which inactivity tracking needs.
Tokens are never printed; a bot is shown by its public id.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from tgms_tui.backend.bootstrap import configure_logging
from tgms_tui.backend.config import ConfigError, Settings, load_settings
from tgms_tui.backend.webhook_updates import ALLOWED_UPDATES  # `tgms poll` asks for the same
from workers.telegram_api import RetryAfter, TelegramClient, TelegramError

T = TypeVar("T")

WEBHOOK_PATHS = {"main": "/api/webhook", "tgms": "/api/webhook/tgms"}
BOT_PATHS_LONGEST_FIRST = tuple(sorted(WEBHOOK_PATHS.values(), key=len, reverse=True))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--url", help="public base URL of `tgms webhook` (https://host[:port][/prefix])")
    action.add_argument("--delete", action="store_true", help="remove the webhook of each configured bot")
    action.add_argument("--info", action="store_true", help="show each bot's webhook (getWebhookInfo)")
    parser.add_argument(
        "--bot", choices=["main", "tgms", "all"], default="all", help="which configured bot (default: all)"
    )
    parser.add_argument(
        "--drop-pending-updates",
        action="store_true",
        help="with --url or --delete: discard updates Telegram has queued",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=None,
        help="with --url: parallel connections Telegram may open (1-100, Telegram's default 40)",
    )


def webhook_url(base: str, bot: str) -> str:
    """The URL Telegram posts `bot`'s updates to, from the server's public base URL."""
    return base.rstrip("/") + WEBHOOK_PATHS[bot]


def normalise_base_url(url: str) -> tuple[str, str | None]:
    """The server's public base URL from what was typed, and a warning when it had to be changed.

    `--url` is the base (https://host[:port][/prefix]): each bot's path is appended to it. A URL that
    already ends in a bot path (`.../api/webhook`, `.../api/webhook/tgms`, even repeated) is cut back
    to its base, with a warning, rather than becoming `.../api/webhook/api/webhook`, which Telegram
    would accept and every delivery then answer 404. `tgms doctor` applies the same rule.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("--url", f"expected https://host[:port][/prefix], got {url!r}")
    if parts.query or parts.fragment:
        raise ConfigError("--url", "must not carry a query or fragment (the bot paths are appended to it)")
    path = parts.path.rstrip("/")
    base_path = path
    while suffix := next((s for s in BOT_PATHS_LONGEST_FIRST if base_path.endswith(s)), None):
        base_path = base_path[: -len(suffix)].rstrip("/")
    base = urlunsplit((parts.scheme, parts.netloc, base_path, "", ""))
    warning = None
    if base_path != path:
        warning = (
            f"--url is the server's base URL (the bot paths are appended to it): using {base} instead of {url.strip()}"
        )
    return base, warning


def webhook_url_problem(url: str, bot: str) -> tuple[str, str] | None:
    """Why `url` (the webhook Telegram has for `bot`) is not where `tgms webhook` serves that bot,
    with the base URL to give `tgms set-webhook --url`; None when it is right."""
    parts = urlsplit(url)
    expected = WEBHOOK_PATHS[bot]
    path = parts.path
    if not path.endswith(expected):
        base_path = path
    else:
        base_path = path[: -len(expected)]
        if not any(base_path.endswith(s) for s in BOT_PATHS_LONGEST_FIRST):
            return None
    try:
        base, _warning = normalise_base_url(urlunsplit((parts.scheme, parts.netloc, base_path, "", "")))
    except ConfigError:
        base = "https://<your host>"
    return f"its path is {parts.path or '/'}, but `tgms webhook` serves this bot at {base}{expected}", base


def _selected(settings: Settings, which: str) -> dict[str, str]:
    tokens = settings.bot_tokens()
    if not tokens:
        raise ConfigError("BOT_TOKEN", "neither BOT_TOKEN nor TGMS_BOT_TOKEN is set: no bot to configure")
    if which != "all":
        if which not in tokens:
            variable = "BOT_TOKEN" if which == "main" else "TGMS_BOT_TOKEN"
            raise ConfigError(variable, f"is not set, so the {which} bot cannot be configured")
        tokens = {which: tokens[which]}
    return tokens


async def _with_flood_retry(call: Callable[[], Awaitable[T]]) -> T:
    """setWebhook calls closer than a second apart get 429: wait as told, once."""
    try:
        return await call()
    except RetryAfter as exc:
        await asyncio.sleep(min(float(exc.retry_after), 30.0))
        return await call()


def _when(epoch: Any) -> str:
    try:
        return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError, OverflowError):
        return str(epoch)


async def _one_bot(bot: str, client: TelegramClient, args: argparse.Namespace, settings: Settings) -> list[str]:
    label = f"{bot} bot (id {client.bot_id})"
    if args.url:
        target = webhook_url(normalise_base_url(args.url)[0], bot)
        await _with_flood_retry(
            lambda: client.set_webhook(
                target,
                secret_token=settings.webhook_secret,
                allowed_updates=ALLOWED_UPDATES,
                drop_pending_updates=args.drop_pending_updates or None,
                max_connections=args.max_connections,
            )
        )
        return [
            f"{label}: webhook set to {target} (allowed updates: {', '.join(ALLOWED_UPDATES)}); "
            "mode: webhook (a running `tgms poll` for this bot stops)"
        ]
    if args.delete:
        await _with_flood_retry(lambda: client.delete_webhook(drop_pending_updates=args.drop_pending_updates or None))
        return [f"{label}: webhook deleted; mode: long polling (run `tgms poll` to receive its updates)"]
    info = await client.get_webhook_info()
    mode = "webhook" if info.get("url") else "long polling (no webhook set: `tgms poll` receives its updates)"
    lines = [
        f"{label}: mode {mode}",
        f"  url {info.get('url') or '(none: webhook not set)'}",
        f"  pending updates: {info.get('pending_update_count', 0)}",
    ]
    if info.get("allowed_updates"):
        lines.append(f"  allowed updates: {', '.join(info.get('allowed_updates', []))}")
    if info.get("max_connections"):
        lines.append(f"  max connections: {info.get('max_connections')}")
    if info.get("last_error_date"):
        lines.append(f"  last error: {_when(info.get('last_error_date'))}: {info.get('last_error_message', '?')}")
    else:
        lines.append("  last error: none")
    return lines


async def configure_webhooks(settings: Settings, args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """Run the chosen action for each selected bot; (lines to print, failures)."""
    tokens = _selected(settings, args.bot)
    lines: list[str] = []
    if args.url:
        _base, warning = normalise_base_url(args.url)
        if warning:
            lines.append(f"warning: {warning}")
        if not settings.webhook_secret:
            raise ConfigError(
                "TGMS_WEBHOOK_SECRET", "is not set: `tgms webhook` would refuse the updates Telegram sends"
            )
        if args.max_connections is not None and not 1 <= args.max_connections <= 100:
            raise ConfigError("--max-connections", "must be between 1 and 100")
    failures: list[str] = []
    for bot, token in tokens.items():
        async with TelegramClient(token, api_base=settings.telegram_api_base) as client:
            try:
                lines += await _one_bot(bot, client, args, settings)
            except TelegramError as exc:  # its text is already redacted
                failures.append(f"{bot} bot (id {client.bot_id}): {type(exc).__name__}: {exc}")
    return lines, failures


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    configure_logging(settings.log_level, settings.secrets())
    lines, failures = asyncio.run(configure_webhooks(settings, args))
    for line in lines:
        print(line, file=sys.stderr if line.startswith("warning: ") else sys.stdout)
    for failure in failures:
        print(f"tgms set-webhook: {failure}", file=sys.stderr)
    return 1 if failures else 0
