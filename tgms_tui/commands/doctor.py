"""`tgms doctor`: the seed's troubleshooting list as one command.

Checks, in the order a human would: configuration present, database reachable and migrated, each bot
token accepted by Telegram (getMe), each bot's webhook and its last delivery error (getWebhookInfo),
and for every active managed group whether the group bot is still an administrator with the rights
TGMS uses (invite users = approve join requests, post, ban = kick inactive members).

One line per finding, `OK` / `WARN` / `FAIL`, each problem with its fix. Exit status 1 when anything
FAILs. Secrets are never printed: a token shows as "set (bot id N)".
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import psycopg

from tgms_tui.backend import groups, pollers
from tgms_tui.backend.config import GENERATE_SECRET, ConfigError, Settings, load_settings, secret_weakness
from workers.telegram_api import TelegramClient, bot_id_of
from workers.telegram_errors import (
    ChatMigrated,
    ChatNotFound,
    Forbidden,
    ForbiddenKind,
    NetworkError,
    ServerError,
    TelegramError,
    Unauthorized,
    redact,
)

from .set_webhook import WEBHOOK_PATHS, webhook_url_problem

Level = Literal["OK", "WARN", "FAIL"]

BOT_ROLES = {"main": "BOT_TOKEN", "tgms": "TGMS_BOT_TOKEN"}
# A webhook error older than this is history, not a current problem.
RECENT_ERROR_SECONDS = 24 * 3600
PENDING_UPDATES_WARN = 100
GROUP_CHECK_CONCURRENCY = 4
BASE_URL_NOTE = f"TGMS appends {WEBHOOK_PATHS['main']} and {WEBHOOK_PATHS['tgms']} itself"


@dataclass(frozen=True)
class Finding:
    level: Level
    subject: str
    message: str
    fix: str | None = None

    def line(self) -> str:
        text = f"{self.level:<4} {self.subject}: {self.message}"
        if self.fix and self.level != "OK":
            text += f" -- fix: {self.fix}"
        return redact(text)


Emit = Callable[[Finding], None]
ClientFactory = Callable[[str, str], TelegramClient]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for each Telegram call (default 10)"
    )
    parser.add_argument("--skip-groups", action="store_true", help="do not check each managed group's rights")


def run(args: argparse.Namespace) -> int:
    findings: list[Finding] = []

    def emit(finding: Finding) -> None:
        findings.append(finding)
        print(finding.line(), flush=True)

    try:
        settings = load_settings()
    except ConfigError as exc:
        emit(Finding("FAIL", "configuration", str(exc), f"correct {exc.variable} in the environment or .env"))
        return 1
    asyncio.run(diagnose(settings, emit=emit, timeout=args.timeout, check_groups=not args.skip_groups))
    counts = {level: sum(1 for f in findings if f.level == level) for level in ("OK", "WARN", "FAIL")}
    print(f"doctor: {counts['OK']} ok, {counts['WARN']} warnings, {counts['FAIL']} failures")
    return 1 if counts["FAIL"] else 0


async def diagnose(
    settings: Settings,
    *,
    emit: Emit,
    timeout: float = 10.0,
    check_groups: bool = True,
    db_url: str | None = None,
    client_factory: ClientFactory | None = None,
) -> list[Finding]:
    """Run every check, emitting findings as they are made; returns them all.

    `db_url` overrides the database resolution (tests); `client_factory(token, api_base)` builds
    the Bot API clients.
    """
    findings: list[Finding] = []

    def note(level: Level, subject: str, message: str, fix: str | None = None) -> None:
        finding = Finding(level, subject, message, fix)
        findings.append(finding)
        emit(finding)

    factory = client_factory or (lambda token, base: TelegramClient(token, api_base=base, timeout=timeout))

    check_configuration(settings, note)
    url = await check_database(settings, note, db_url)
    bots = await check_tokens(settings, note, factory)
    configured = {role for role in BOT_ROLES if getattr(settings, "tgms_bot_token" if role == "tgms" else "bot_token")}
    modes: list[str | None] = []
    try:
        seen = await _pollers(url) if url is not None else None
        for role, client in bots.items():
            if role == "main" and settings.bot_token == settings.tgms_bot_token:
                continue  # one bot in both roles: its one webhook is the group bot's (checked next)
            modes.append(await check_webhook(role, client, note, seen))
        # Polling only: every configured bot answered, and none has a webhook set.
        polling_only = bool(modes) and set(bots) == configured and all(m == "polling" for m in modes)
        check_webhook_secret(settings, note, polling_only=polling_only)
        group_bot = bots.get("tgms") or bots.get("main")
        if check_groups and url is not None and group_bot is not None:
            await check_groups_rights(url, group_bot, note)
        elif check_groups and url is not None and not bots:
            note("WARN", "groups", "not checked: no bot token was accepted by Telegram")
    finally:
        for client in bots.values():
            await client.aclose()
    return findings


Note = Callable[..., None]


# ------------------------------------------------------------------ configuration


def check_configuration(settings: Settings, note: Note) -> None:
    tokens = {role: getattr(settings, "tgms_bot_token" if role == "tgms" else "bot_token") for role in BOT_ROLES}
    for role, var in BOT_ROLES.items():
        token = tokens[role]
        if token:
            note("OK", "config", f"{var} set (bot id {bot_id_of(token)})")
    if not any(tokens.values()):
        note(
            "FAIL",
            "config",
            "neither BOT_TOKEN nor TGMS_BOT_TOKEN is set",
            "create bots with @BotFather and set TGMS_BOT_TOKEN (group management) and BOT_TOKEN (main bot)",
        )
    elif not tokens["tgms"]:
        note(
            "WARN",
            "config",
            "TGMS_BOT_TOKEN not set: the group-management worker has no bot of its own",
            "set TGMS_BOT_TOKEN to the token of the bot that is admin in your groups",
        )
    elif not tokens["main"]:
        note(
            "WARN",
            "config",
            "BOT_TOKEN not set: the main worker cannot answer regular updates",
            "set BOT_TOKEN to the main bot's token",
        )
    if tokens["main"] and tokens["main"] == tokens["tgms"]:
        note(
            "WARN",
            "config",
            "BOT_TOKEN and TGMS_BOT_TOKEN are the same bot",
            "the seed uses two bots; give TGMS its own bot from @BotFather",
        )

    if settings.database_url:
        note("OK", "config", f"DATABASE_URL set ({_describe_db_url(settings.database_url)})")
    else:
        note("OK", "config", f"DATABASE_URL not set: embedded PostgreSQL in {settings.data_dir}")
    note("OK", "config", f"TELEGRAM_API_BASE = {_strip_userinfo(settings.telegram_api_base)}")

    if not settings.admin_api_key:
        note(
            "WARN",
            "config",
            "ADMIN_API_KEY not set: the broadcast API /api/tgms/send cannot be used",
            "set ADMIN_API_KEY to a long random value, e.g. `python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'`",
        )
    elif weakness := secret_weakness(settings.admin_api_key):
        note("WARN", "config", f"ADMIN_API_KEY {weakness}", f"use a random one: {GENERATE_SECRET}")
    else:
        note("OK", "config", "ADMIN_API_KEY set")
    note(
        "OK",
        "config",
        f"rate {settings.rate_per_second:g} msg/s, {settings.group_delay_seconds:g} s between "
        f"groups, {settings.group_per_minute} msg/min per group",
    )


def _strip_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if parts.username or parts.password:
        return parts._replace(netloc=parts.hostname or "").geturl()
    return url


def _describe_db_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "local socket"
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path or ''}"


def check_webhook_secret(settings: Settings, note: Note, *, polling_only: bool) -> None:
    """TGMS_WEBHOOK_SECRET proves that an update came from Telegram; a set-up where every bot uses
    long polling (`tgms poll`, no webhook set) receives no webhook calls and needs none."""
    if not settings.webhook_secret:
        if polling_only:
            note(
                "OK",
                "config",
                "TGMS_WEBHOOK_SECRET not set: not needed, every bot uses long polling (set one before "
                "`tgms set-webhook`)",
            )
            return
        note(
            "WARN",
            "config",
            "TGMS_WEBHOOK_SECRET not set: forged updates cannot be told from Telegram's",
            "set TGMS_WEBHOOK_SECRET (A-Z a-z 0-9 _ -) and run `tgms set-webhook --url ...` again"
            + ("" if polling_only else "; with long polling only (`tgms poll`) no secret is needed"),
        )
    elif weakness := secret_weakness(settings.webhook_secret):
        fix = f"use a random one ({GENERATE_SECRET}) and run `tgms set-webhook --url ...` again"
        note("WARN", "config", f"TGMS_WEBHOOK_SECRET {weakness}", fix)
    elif settings.webhook_secret == settings.admin_api_key:
        fix = "give each its own random value; Telegram (and its logs) must never hold the admin key"
        note("WARN", "config", "TGMS_WEBHOOK_SECRET is the same as ADMIN_API_KEY", fix)
    else:
        note("OK", "config", "TGMS_WEBHOOK_SECRET set")


# ------------------------------------------------------------------ database


async def check_database(settings: Settings, note: Note, db_url: str | None) -> str | None:
    """Returns the URL when the database is reachable."""
    from tgms_tui.backend.db import database_url, pending_migrations

    try:
        url: str = db_url if db_url is not None else await asyncio.to_thread(database_url, settings)
    except Exception as exc:  # embedded server failed to start
        note(
            "FAIL",
            "database",
            f"could not start the embedded PostgreSQL: {type(exc).__name__}: {exc}",
            "set DATABASE_URL to a PostgreSQL server, or check TGMS_DATA_DIR is writable",
        )
        return None
    try:
        async with await psycopg.AsyncConnection.connect(url, connect_timeout=10) as conn:
            cur = await conn.execute("SELECT current_setting('server_version')")
            row = await cur.fetchone()
    except psycopg.Error as exc:
        note(
            "FAIL",
            "database",
            f"cannot connect: {_first_line(exc)}",
            "check DATABASE_URL (host, port, user, password) and that PostgreSQL is running",
        )
        return None
    note("OK", "database", f"reachable (PostgreSQL {row[0] if row else '?'})")
    try:
        pending = await asyncio.to_thread(pending_migrations, url)
    except psycopg.Error as exc:
        note("FAIL", "database", f"cannot read the migrations table: {_first_line(exc)}", "run `tgms migrate`")
        return None
    if pending:
        note("FAIL", "database", f"{len(pending)} migration(s) not applied: {', '.join(pending)}", "run `tgms migrate`")
        return None
    note("OK", "database", "schema up to date")
    return url


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return redact(text[0] if text else type(exc).__name__)


# ------------------------------------------------------------------ bots


async def check_tokens(settings: Settings, note: Note, factory: ClientFactory) -> dict[str, TelegramClient]:
    """getMe for each configured bot; returns clients for the bots Telegram accepted."""
    accepted: dict[str, TelegramClient] = {}
    for role, token in settings.bot_tokens().items():
        var = BOT_ROLES[role]
        subject = f"{role} bot"
        client = factory(token, settings.telegram_api_base)
        try:
            me = await client.get_me()
        except Unauthorized:
            note(
                "FAIL",
                subject,
                f"{var} (bot id {bot_id_of(token)}) is rejected by Telegram (401 Unauthorized)",
                f"copy the current token from @BotFather (/mybots -> API Token) into {var}",
            )
            await client.aclose()
            continue
        except (NetworkError, ServerError) as exc:
            note(
                "FAIL",
                subject,
                f"cannot reach the Bot API at {_strip_userinfo(settings.telegram_api_base)}: {exc}",
                "check network access to TELEGRAM_API_BASE (and that it is the right URL)",
            )
            await client.aclose()
            continue
        except TelegramError as exc:
            note("FAIL", subject, f"getMe failed: {exc}", f"check {var}")
            await client.aclose()
            continue
        if me.get("id") != client.bot_id:
            note(
                "WARN",
                subject,
                f"getMe answered bot id {me.get('id')} for a token of bot id {client.bot_id}",
                "check TELEGRAM_API_BASE points at the Bot API",
            )
        name = f"@{me['username']}" if me.get("username") else me.get("first_name", "?")
        note("OK", subject, f"{var} valid: {name} (id {me.get('id')})")
        accepted[role] = client
    return accepted


async def _pollers(url: str) -> list[pollers.PollerRow] | None:
    """The `tgms poll` processes seen lately (None: the database could not say)."""
    try:
        async with await psycopg.AsyncConnection.connect(url, connect_timeout=10) as conn:
            return await pollers.pollers(conn)
    except psycopg.Error:
        return None


async def check_webhook(
    role: str, client: TelegramClient, note: Note, seen: list[pollers.PollerRow] | None = None
) -> str | None:
    """Which mode the bot is in — webhook (a URL is set) or long polling (`tgms poll`) — and
    whether that mode is working. Returns the mode ('webhook' | 'polling'; None: Telegram could not say)."""
    subject = f"{role} bot webhook"
    try:
        info = await client.get_webhook_info()
    except TelegramError as exc:
        note("FAIL", subject, f"getWebhookInfo failed: {exc}", "check the bot token and network")
        return None
    url = info.get("url") or ""
    live = [p for p in seen or [] if p.bot == role and p.alive]
    if not url:
        check_polling(role, note, live, seen is not None)
        return "polling"
    shown = _strip_userinfo(_strip_query(url))
    wrong = webhook_url_problem(url, role)
    if wrong is not None:
        problem, base = wrong
        note(
            "FAIL",
            subject,
            f"set to {shown}: {problem}, so every delivery fails (404) (mode: webhook)",
            f"run `tgms set-webhook --url {_strip_userinfo(base)}` ({BASE_URL_NOTE})",
        )
    else:
        note("OK", subject, f"set to {shown} (mode: webhook)")
    if live:
        note(
            "WARN",
            subject,
            f"`tgms poll` still runs for this bot ({_where(live)}) though a webhook is set: Telegram refuses "
            "its getUpdates",
            "choose one mode: stop `tgms poll`, or remove the webhook with `tgms set-webhook --delete`",
        )
    error_date = info.get("last_error_date")
    if error_date:
        age = max(0.0, time.time() - error_date)
        message = info.get("last_error_message") or "unknown error"
        if age < RECENT_ERROR_SECONDS:
            note(
                "WARN",
                subject,
                f"last delivery error {_age(age)} ago: {message}",
                "make sure `tgms webhook` is running and reachable at that URL over HTTPS; "
                "Telegram retries, updates older than 24 h are lost",
            )
        else:
            note("OK", subject, f"last delivery error was {_age(age)} ago: {message}")
    pending = int(info.get("pending_update_count") or 0)
    if pending >= PENDING_UPDATES_WARN:
        note(
            "WARN",
            subject,
            f"{pending} updates waiting to be delivered",
            "the webhook server is down or slow; check `tgms webhook` and its database connection",
        )
    allowed = info.get("allowed_updates")
    if allowed and "chat_join_request" not in allowed and role == "tgms":
        note(
            "WARN",
            subject,
            "allowed_updates excludes chat_join_request: join requests will not arrive",
            "run `tgms set-webhook --url ...` again (it asks for every update type TGMS needs)",
        )
    return "webhook"


def check_polling(role: str, note: Note, live: list[pollers.PollerRow], known: bool) -> None:
    subject = f"{role} bot webhook"
    active = [p for p in live if p.status == "polling"]
    if active:
        standby = len(live) - len(active)
        note("OK", subject, f"no webhook set (mode: long polling): `tgms poll` active on {_where(active)}"
             + (f", {standby} standing by" if standby else ""))  # fmt: skip
    elif live:
        note(
            "WARN",
            subject,
            f"no webhook set (mode: long polling): `tgms poll` runs on {_where(live)} but is not polling "
            f"({', '.join(sorted({p.status for p in live}))})",
            "see that process's log: it waits for the database or the Bot API and retries by itself",
        )
    else:
        note(
            "WARN",
            subject,
            "no webhook set, and no `tgms poll` running" + ("" if known else " (the database could not say)")
            + ": Telegram keeps this bot's updates (24 h) until one of them fetches them",
            "run `tgms poll` (no public address needed), or `tgms set-webhook --url https://<your host>` "
            f"({BASE_URL_NOTE})",
        )  # fmt: skip


def _where(rows: list[pollers.PollerRow]) -> str:
    return ", ".join(f"{p.host}:{p.pid}" for p in rows)


def _strip_query(url: str) -> str:
    return urlsplit(url)._replace(query="", fragment="").geturl()


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# ------------------------------------------------------------------ groups

PROMOTE_FIX = (
    "in the group's settings promote the bot to administrator with 'Invite Users via Link' "
    "(approves join requests) and 'Ban Users' (kicks inactive members)"
)


async def check_groups_rights(url: str, client: TelegramClient, note: Note) -> None:
    async with await psycopg.AsyncConnection.connect(url, connect_timeout=10) as conn:
        rows = await groups.list_all(conn)
    active = [r for r in rows if r.is_active]
    inactive = len(rows) - len(active)
    if not rows:
        note(
            "WARN",
            "groups",
            "no managed groups yet",
            "make the group bot an administrator of a group (that registers it), or add one by id with "
            "`tgms groups add ID` or `+` in the TUI's groups pane",
        )
        return
    semaphore = asyncio.Semaphore(GROUP_CHECK_CONCURRENCY)

    async def one(row: groups.GroupListing) -> list[tuple[Level, str, str, str | None]]:
        async with semaphore:
            return await _check_group(
                client, row.group_id, row.title, row.chat_type, inactivity_days=row.inactivity_days
            )

    # Checked concurrently, reported in table order so the output is stable.
    results: list[Awaitable[list[tuple[Level, str, str, str | None]]]] = [one(r) for r in active]
    for lines in await asyncio.gather(*results):
        for level, subject, message, fix in lines:
            note(level, subject, message, fix)
    summary = f"{len(active)} active group(s) checked"
    if inactive:
        summary += f", {inactive} inactive not checked"
    note("OK", "groups", summary)


async def _check_group(
    client: TelegramClient, group_id: int, title: str, chat_type: str, *, inactivity_days: int | None
) -> list[tuple[Level, str, str, str | None]]:
    subject = f"group {group_id} {title!r}" if title else f"group {group_id}"
    assert client.bot_id is not None
    try:
        member = await client.get_chat_member(group_id, client.bot_id)
    except ChatMigrated as exc:
        return [
            (
                "WARN",
                subject,
                f"was upgraded to a supergroup with id {exc.new_chat_id}",
                "nothing to do if TGMS has sent there since (it moves the group to the new id); "
                "otherwise the next broadcast or member count will",
            )
        ]
    except ChatNotFound:
        return [
            (
                "FAIL",
                subject,
                "Telegram says chat not found: the bot was never added, or the id is wrong",
                "add the bot to the group as administrator, or correct the group id",
            )
        ]
    except Forbidden as exc:
        if exc.kind is ForbiddenKind.CHAT_DELETED:
            return [("FAIL", subject, "the group was deleted", "deactivate or remove it in TGMS")]
        return [
            (
                "FAIL",
                subject,
                f"the bot is no longer in the group ({exc.description})",
                "add the bot back as administrator, then reactivate the group in TGMS",
            )
        ]
    except TelegramError as exc:
        return [("WARN", subject, f"could not check the bot's rights: {exc}", None)]

    status = member.get("status")
    if status == "creator":
        return [("OK", subject, "the bot owns the group", None)]
    if status in ("left", "kicked"):
        return [
            (
                "FAIL",
                subject,
                f"the bot is not in the group (status {status})",
                "add the bot back as administrator, then reactivate the group in TGMS",
            )
        ]
    if status != "administrator":
        can_post = member.get("can_send_messages", True) if status == "restricted" else True
        problems = "cannot approve join requests or ban"
        if not can_post:
            problems = "cannot post, approve join requests or ban"
        return [("FAIL", subject, f"the bot is not an administrator (status {status}): {problems}", PROMOTE_FIX)]

    out: list[tuple[Level, str, str, str | None]] = []
    if not member.get("can_invite_users"):
        out.append(
            (
                "FAIL",
                subject,
                "the bot cannot approve join requests (no 'Invite Users via Link' right)",
                "in the group's administrators, give the bot 'Invite Users via Link'",
            )
        )
    if chat_type == "channel" and not member.get("can_post_messages"):
        out.append(
            (
                "FAIL",
                subject,
                "the bot cannot post in the channel (no 'Post Messages' right)",
                "give the bot 'Post Messages'",
            )
        )
    if not member.get("can_restrict_members"):
        if inactivity_days:
            out.append(
                (
                    "FAIL",
                    subject,
                    "inactive-member kicking is on, but the bot cannot ban (no 'Ban Users' right)",
                    "give the bot 'Ban Users', or turn kicking off for this group",
                )
            )
        else:
            out.append(
                (
                    "WARN",
                    subject,
                    "the bot cannot ban members (needed only to kick inactive members)",
                    "give the bot 'Ban Users' if you want inactive members kicked",
                )
            )
    if not out:
        out.append(("OK", subject, "the bot is an administrator: can approve join requests, post and ban", None))
    return out
