"""`tgms poll` / `python -m webhook_server.poll`: the long-polling intake, for bots without a public
HTTPS address.

For each configured bot, a loop on getUpdates (long poll, `--timeout` 50 s, the same allowed_updates
as `tgms set-webhook`) that stores each batch with the webhook's own statement
(`webhook_updates.store_batch`: the same dedupe by (bot, update_id), job types, priorities and
payloads), as one transaction, and confirms the batch to Telegram — by asking for the next `offset` —
only after that commit. So a crash loses nothing and duplicates nothing:

- killed before the commit: the batch was not confirmed, Telegram hands it out again;
- killed after the commit, before the next getUpdates: the batch comes again, and the store finds
  every update already there (no second job).

Only the poller holding the bot's advisory lock polls (`tgms_tui.backend.pollers`); the others stand
by and take over within about a second of its death. The lock's connection is also the one that
stores and heartbeats, so a poller that lost its database session (and with it the lock) notices at
its next statement or heartbeat and stops polling before anyone else starts.

Faults: 429 waits `retry_after`; 5xx, network errors and timeouts back off exponentially with jitter;
the batch in hand is never dropped — while PostgreSQL is unreachable the poller keeps it unconfirmed
and waits (Telegram keeps updates for 24 h). A rejected token (401) stops the process with one line
and a non-zero exit, as does a webhook found set (unless `--delete-webhook`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import socket
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

import psycopg

from tgms_tui.backend import health, pollers
from tgms_tui.backend.bootstrap import prepare
from tgms_tui.backend.config import ConfigError, Settings
from tgms_tui.backend.entrypoint import run_entry_point
from tgms_tui.backend.webhook_updates import ALLOWED_UPDATES, batch_text, payload_text, store_batch

from .getupdates import Conflict, TokenRejected, Unavailable, UpdatesClient, describe
from .updates import UpdateRejected, parse_update

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_LONG_POLL = 50  # seconds: Telegram's own cap


# Errors about the batch's content, not the session: retrying the same batch would fail the same way.
REFUSED = (psycopg.errors.DataError, psycopg.errors.IntegrityError, psycopg.errors.SyntaxErrorOrAccessRuleViolation)


class Fatal(Exception):
    """Polling cannot go on until an operator acts; the message is the one line they read."""


class LeaseLost(Exception):
    """The database session holding the bot's lock ended: stop polling now."""


class Interrupted(Exception):
    """A stop was asked for, or the lease was lost, while waiting for Telegram."""


class Batch(NamedTuple):
    payloads: list[tuple[int, str]]  # (update_id, job payload as JSON text), in update_id order
    next_offset: int | None  # the offset that confirms the whole batch
    refused: list[int]  # update ids that are not storable updates (skipped)


@dataclass
class PollOptions:
    timeout: float = MAX_LONG_POLL
    limit: int = 100
    standby_seconds: float = 1.0  # how often a standby poller tries the lock
    heartbeat_seconds: float = 2.0
    backoff_base: float = 0.25
    backoff_cap: float = 10.0
    statement_timeout_ms: int = 5000
    delete_webhook: bool = False
    drop_pending: bool = False


class Backoff:
    """Exponential delays with jitter (half fixed, half random), reset by a success."""

    def __init__(self, base: float, cap: float) -> None:
        self.base, self.cap, self.failures = base, cap, 0

    def next(self, at_least: float | None = None) -> float:
        self.failures += 1
        if at_least is not None:  # Telegram said how long: wait that, plus a little spread
            return at_least + random.uniform(0.0, min(1.0, 0.1 * at_least + 0.1))
        ceiling = min(self.cap, self.base * 2 ** (self.failures - 1))
        return ceiling / 2 + random.uniform(0.0, ceiling / 2)

    def reset(self) -> None:
        self.failures = 0


def prepare_batch(bot: str, updates: list[dict[str, Any]]) -> Batch:
    """The batch as the store statement takes it. Each update is checked exactly as a webhook body
    is, so the stored row is what the webhook would have stored."""
    payloads: list[tuple[int, str]] = []
    refused: list[int] = []
    highest: int | None = None
    for update in updates:
        update_id = update.get("update_id")
        if type(update_id) is int:
            highest = update_id if highest is None else max(highest, update_id)
        try:
            parsed = parse_update(_body(update))
        except (UpdateRejected, ValueError) as exc:
            # A webhook would answer 400 and Telegram would retry it for a day; a poller must move
            # past it or it would stop every later update of this bot.
            log.warning("%s bot: update %s refused and skipped: %s", bot, update_id, exc)
            refused.append(update_id if type(update_id) is int else -1)
            continue
        payloads.append((parsed.update_id, payload_text(bot, parsed.update_id, parsed.update_type, parsed.json_text)))
    payloads.sort()
    return Batch(payloads, highest + 1 if highest is not None else None, refused)


def _body(update: dict[str, Any]) -> bytes:
    """The update as Telegram writes a webhook body (compact, update_id first, characters as they
    are), so that `parse_update` takes the same fast path as for a webhook: no second decode, and
    PostgreSQL validates the JSON as it stores it (json.dumps writes only valid JSON: NaN is refused
    here). A NUL or a lone surrogate comes out \\u-escaped or fails to encode, which sends the update
    through the full check and its repairs, as on the webhook."""
    ordered = {"update_id": update.get("update_id"), **update}
    text = json.dumps(ordered, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate: let the full check repair it
        return json.dumps(ordered, separators=(",", ":"), allow_nan=False).encode()


class BotPoller:
    """Polls one bot while it holds the bot's lock; stands by otherwise."""

    def __init__(
        self, bot: str, token: str, settings: Settings, url: str, options: PollOptions, stop: asyncio.Event
    ) -> None:
        self.bot = bot
        self.settings = settings
        self.url = url
        self.options = options
        self.stop = stop
        self.client = UpdatesClient(token, settings.telegram_api_base, lean=settings.http_transport == "lean")
        self.label = f"{bot} bot (id {self.client.bot_id})"
        self.host = socket.gethostname()
        self.worker_id = pollers.worker_id(bot, self.host, os.getpid())
        self.lock_key = pollers.lock_key(self.client.bot_id, bot)
        self.status = "starting"
        self.stored = 0
        self.failed = 0
        self.last_error: str | None = None
        self.last_activity = time.time()
        self.backoff = Backoff(options.backoff_base, options.backoff_cap)

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        try:
            await self._check_webhook()
            while not self.stop.is_set():
                conn = await self._connect()
                if conn is None:
                    break
                try:
                    await self._standby_then_poll(conn)
                except LeaseLost as exc:
                    self._failure(f"database session lost: {exc}")
                    log.warning("%s: lost the database session (%s); polling paused", self.label, exc)
                finally:
                    with contextlib.suppress(Exception):
                        await conn.close()
        finally:
            await self.client.aclose()
            await self._final_row()

    async def _connect(self) -> psycopg.AsyncConnection[Any] | None:
        """The lease connection, retried with backoff while the database is unreachable."""
        while not self.stop.is_set():
            try:
                conn = await psycopg.AsyncConnection.connect(self.url, **pollers.LEASE_CONNECTION)
                await conn.execute(
                    "SELECT set_config('statement_timeout', %s, false)", (f"{self.options.statement_timeout_ms}ms",)
                )
                return conn
            except psycopg.Error as exc:
                self._failure(f"database unavailable: {describe(exc)}")
                self.status = "waiting"
                delay = self.backoff.next()
                log.warning("%s: database unavailable (%s); retrying in %.1f s", self.label, describe(exc), delay)
                await self._sleep(delay)
        return None

    async def _standby_then_poll(self, conn: psycopg.AsyncConnection[Any]) -> None:
        announced = False
        while not self.stop.is_set():
            try:
                if await pollers.try_lock(conn, self.lock_key):
                    break
                self.status = "standby"
                await self._heartbeat(conn)
            except psycopg.OperationalError as exc:
                raise LeaseLost(describe(exc)) from None
            self.backoff.reset()
            if not announced:
                log.info("%s: another poller holds this bot; standing by", self.label)
                announced = True
            await self._sleep(self.options.standby_seconds)
        else:
            return
        log.info("%s: polling (lock taken)", self.label)
        self.status = "polling"
        self.backoff.reset()
        try:
            await self._heartbeat(conn)
        except psycopg.OperationalError as exc:
            raise LeaseLost(describe(exc)) from None
        await self._poll(conn)

    async def _final_row(self) -> None:
        """Best effort: mark this poller stopped (a fresh connection: the lease one may be gone)."""
        self.status = "stopped"
        with contextlib.suppress(Exception):
            async with await psycopg.AsyncConnection.connect(self.url, autocommit=True, connect_timeout=3) as conn:
                await self._write_row(conn)

    # ------------------------------------------------------------------ polling

    async def _poll(self, conn: psycopg.AsyncConnection[Any]) -> None:
        lost = asyncio.Event()
        beat = asyncio.create_task(self._heartbeat_loop(conn, lost), name=f"poll-heartbeat-{self.bot}")
        offset: int | None = None
        try:
            while not self.stop.is_set() and not lost.is_set():
                try:
                    updates = await self._unless(
                        self.client.get_updates(
                            offset, timeout=self.options.timeout, allowed_updates=ALLOWED_UPDATES,
                            limit=self.options.limit,
                        ),
                        lost,
                    )  # fmt: skip
                except Interrupted:
                    break
                except TokenRejected as exc:
                    raise Fatal(f"{self.label}: Telegram rejects the token ({exc}); {self._token_fix()}") from None
                except Conflict as exc:
                    if exc.webhook_active:
                        raise Fatal(
                            f"{self.label}: a webhook was set while polling ({exc}); choose one mode: "
                            "stop `tgms poll`, or remove the webhook with `tgms set-webhook --delete`"
                        ) from None
                    # We hold the lock, so the other caller is outside this database: say so, and
                    # ask again after a pause rather than taking turns with it every request.
                    await self._fault(f"another getUpdates caller uses this bot ({exc})")
                    continue
                except Unavailable as exc:
                    await self._fault(describe(exc), retry_after=exc.retry_after)
                    continue
                self.status = "polling"
                self.backoff.reset()
                if not updates:
                    continue
                batch = prepare_batch(self.bot, updates)
                if batch.payloads and not await self._store(conn, batch.payloads, lost):
                    break  # stopping with the batch not stored: it stays unconfirmed at Telegram
                self.failed += len(batch.refused)
                offset = batch.next_offset  # the next getUpdates confirms this batch: it is committed
            if self.stop.is_set() and not lost.is_set():
                # Confirm the last stored batch now, so the next poller does not fetch it again
                # (harmless if it did: the store would find it there); this also ends the long poll
                # the server still holds open for the request given up above.
                with contextlib.suppress(Exception):
                    await self.client.get_updates(offset, timeout=0, allowed_updates=ALLOWED_UPDATES, limit=1)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await beat
        if lost.is_set():
            raise LeaseLost("heartbeat failed")

    async def _store(self, conn: psycopg.AsyncConnection[Any], payloads: list[tuple[int, str]],
                     lost: asyncio.Event) -> bool:  # fmt: skip
        """Store the batch, retrying until it is stored (True), or a stop is asked for (False);
        LeaseLost when the session ends first. Either way an unstored batch stays unconfirmed at
        Telegram, for whoever polls next."""
        while True:
            if lost.is_set():
                raise LeaseLost("heartbeat failed")
            try:
                already = await store_batch(conn, batch_text(p for _, p in payloads))
            except psycopg.OperationalError as exc:
                lost.set()
                raise LeaseLost(describe(exc)) from None
            except REFUSED as exc:
                # PostgreSQL refused a value: store the updates one by one, so that a single bad
                # update (skipped, as the webhook would answer it 400) cannot hold back the others.
                if len(payloads) > 1:
                    for single in payloads:
                        if not await self._store(conn, [single], lost):
                            return False
                    return True
                log.warning("%s: update %s refused by the database and skipped: %s", self.label,
                            payloads[0][0], describe(exc))  # fmt: skip
                self._failure(f"update {payloads[0][0]} refused by the database: {describe(exc)}")
                return True
            except psycopg.Error as exc:
                # The session lives (a statement timeout, a lock): keep the batch and the lock, and
                # try again after a pause. Never confirmed until it is stored.
                await self._fault(f"could not store a batch: {describe(exc)}")
                if self.stop.is_set():
                    return False
                continue
            self.stored += len(payloads) - len(already)
            self.last_activity = time.time()
            self.backoff.reset()
            return True

    async def _unless(self, call: Awaitable[T], lost: asyncio.Event) -> T:
        """`call`'s result; Interrupted when the lease is lost or a stop is asked for first."""
        task = asyncio.ensure_future(call)
        waiters = [asyncio.ensure_future(lost.wait()), asyncio.ensure_future(self.stop.wait())]
        try:
            await asyncio.wait([task, *waiters], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            raise Interrupted
        return task.result()

    async def _fault(self, what: str, *, retry_after: float | None = None) -> None:
        self._failure(what)
        self.status = "waiting"
        delay = self.backoff.next(retry_after)
        log.warning("%s: %s; retrying in %.1f s", self.label, what, delay)
        await self._sleep(delay)

    def _failure(self, what: str) -> None:
        self.failed += 1
        self.last_error = what[:300]

    def _token_fix(self) -> str:
        variable = "TGMS_BOT_TOKEN" if self.bot == "tgms" else "BOT_TOKEN"
        return f"copy the current token from @BotFather (/mybots -> API Token) into {variable}"

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)

    # ------------------------------------------------------------------ webhook

    async def _check_webhook(self) -> None:
        """A set webhook and getUpdates exclude each other: stop with the fix, or remove it."""
        while True:
            try:
                info = await self.client.get_webhook_info()
                if not info.get("url"):
                    return
                if not self.options.delete_webhook:
                    host = urlsplit(str(info["url"])).hostname or "?"
                    raise Fatal(
                        f"{self.label} has a webhook set (to {host}), so Telegram sends its updates there: "
                        "remove it with `tgms set-webhook --delete`, or start `tgms poll --delete-webhook`"
                    )
                await self.client.delete_webhook(drop_pending_updates=self.options.drop_pending)
                pending = info.get("pending_update_count", 0)
                kept = "dropped" if self.options.drop_pending else "kept"
                log.warning("%s: webhook deleted (%s pending update(s) %s)", self.label, pending, kept)
                return
            except TokenRejected as exc:
                raise Fatal(f"{self.label}: Telegram rejects the token ({exc}); {self._token_fix()}") from None
            except Unavailable as exc:
                self._failure(describe(exc))
                delay = self.backoff.next(exc.retry_after)
                log.warning("%s: Bot API unavailable (%s); retrying in %.1f s", self.label, describe(exc), delay)
                await self._sleep(delay)
                if self.stop.is_set():
                    return
            except Conflict as exc:
                raise Fatal(f"{self.label}: {exc}") from None

    # ------------------------------------------------------------------ health

    async def _heartbeat_loop(self, conn: psycopg.AsyncConnection[Any], lost: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(self.options.heartbeat_seconds)
            try:
                await self._heartbeat(conn)
            except psycopg.OperationalError as exc:
                log.warning("%s: heartbeat failed (%s)", self.label, describe(exc))
                lost.set()
                return
            except psycopg.Error as exc:  # a slow statement: the session (and the lock) still live
                log.info("%s: heartbeat not written: %s", self.label, describe(exc))

    async def _heartbeat(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if conn.broken or conn.closed:
            raise psycopg.OperationalError("the connection is closed")
        await self._write_row(conn)

    async def _write_row(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await health.upsert(
            conn,
            worker_id=self.worker_id,
            bot_name=pollers.POLLER_BOT_NAME,
            status=self.status,
            last_activity=self.last_activity,
            pid=os.getpid(),
            host=self.host,
            done=self.stored,
            failed=self.failed,
            last_error=self.last_error,
        )


# ---------------------------------------------------------------------- process


async def poll_forever(settings: Settings, url: str, bots: dict[str, str], options: PollOptions) -> None:
    """Poll every bot in `bots` (role -> token) until SIGTERM/SIGINT; Fatal when one cannot go on."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    tasks = [
        asyncio.create_task(BotPoller(bot, token, settings, url, options, stop).run(), name=f"poll-{bot}")
        for bot, token in bots.items()
    ]
    fatal: BaseException | None = None
    for next_done in asyncio.as_completed(tasks):
        try:
            await next_done
        except Fatal as exc:
            fatal = fatal or exc
            stop.set()  # the other bots stop cleanly too: one clear failure, one exit
    if fatal is not None:
        raise fatal


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bot", choices=["main", "tgms", "all"], default="all", help="which configured bot to poll (default: all)"
    )
    parser.add_argument(
        "--delete-webhook",
        action="store_true",
        help="remove a webhook found set (its pending updates are kept and polled) instead of stopping",
    )
    parser.add_argument(
        "--drop-pending", action="store_true", help="with --delete-webhook: discard the updates Telegram holds"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=float(MAX_LONG_POLL),
        help=f"long-poll timeout in seconds, 1-{MAX_LONG_POLL} (default {MAX_LONG_POLL})",
    )


def _selected(settings: Settings, which: str) -> dict[str, str]:
    tokens = settings.bot_tokens()
    if not tokens:
        raise ConfigError("TGMS_BOT_TOKEN", "neither BOT_TOKEN nor TGMS_BOT_TOKEN is set: no bot to poll")
    if which == "all":
        return tokens
    if which not in tokens:
        raise ConfigError("TGMS_BOT_TOKEN" if which == "tgms" else "BOT_TOKEN", f"is not set: no {which} bot to poll")
    return {which: tokens[which]}


def run(args: argparse.Namespace) -> int:
    if args.drop_pending and not args.delete_webhook:
        raise ConfigError("--drop-pending", "only with --delete-webhook (pending updates are otherwise polled)")
    if not 1 <= args.timeout <= MAX_LONG_POLL:
        raise ConfigError("--timeout", f"must be between 1 and {MAX_LONG_POLL} seconds")
    settings, url = prepare()  # settings, logging with redaction, database, migrations
    bots = _selected(settings, args.bot)
    options = PollOptions(timeout=args.timeout, delete_webhook=args.delete_webhook, drop_pending=args.drop_pending)
    log.info("long polling for: %s", ", ".join(bots))
    try:
        asyncio.run(poll_forever(settings, url, bots, options))
    except Fatal as exc:
        print(f"tgms poll: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m webhook_server.poll", description="Long-poll Telegram (getUpdates) into TGMS's queue."
    )
    add_arguments(parser)
    return run_entry_point(lambda: run(parser.parse_args(argv)), "webhook_server.poll")


if __name__ == "__main__":
    raise SystemExit(main())
