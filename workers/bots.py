"""Which Telegram bot answers a job, and the shared objects every handler uses to reach Telegram.

TGMS runs two bots (seed names): the main bot (`BOT_TOKEN`) and the group-management bot
(`TGMS_BOT_TOKEN`). A job's payload names the bot that received its update (`"bot": "main"|"tgms"`):
that bot is the one with rights in the chat, so it is the one that answers. Jobs without a bot
(broadcasts, member counts, kicks) use the group-management bot. A deployment with only one token
uses it for everything.

`Bots` is created once per worker process and kept in `JobContext.services`; the httpx connection
pool, the rate limiter and a small autocommit database pool are shared by every job of the process.
They are made on first use (`await bots_for(ctx)`), once the worker's event loop and database exist.

Why a second, autocommit pool: a pooled connection in psycopg's default mode spends three round
trips on a one-statement transaction (BEGIN, the statement, COMMIT). The hot paths (approving a join
request, each broadcast send, every rate-limit token) are single statements, each atomic on its own,
so in autocommit they cost one round trip. Multi-statement work keeps using explicit transactions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import httpx
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from tgms_tui.backend import groups
from tgms_tui.backend.config import Settings
from tgms_tui.backend.lean_transport import LeanTransport, proxy_applies
from tgms_tui.backend.queue import Job

from .rate_limit import RateLimiter
from .runner import JobContext, PermanentFailure, Snooze
from .services import Services
from .telegram_api import DEFAULT_TIMEOUT, ChatMigrated, RetryAfter, TelegramClient, TelegramError

# Bot API calls one worker process may have in flight at once, over both bots.
MAX_CONNECTIONS = 100
# Drop idle connections before common servers do (uvicorn closes them after 5 s): a request written
# into a connection the server is closing fails with no answer, which for a send means "maybe
# delivered" and an ambiguous group, though nothing reached the server.
KEEPALIVE_SECONDS = 4.0

log = logging.getLogger(__name__)

BotRole = Literal["main", "tgms"]
ROLES: tuple[BotRole, ...] = ("main", "tgms")
# Statements on it are short; a handful of connections serve hundreds of jobs per second.
AUTOCOMMIT_POOL_SIZE = 6


def bot_api_http(settings: Settings) -> httpx.AsyncClient:
    """The HTTP client a worker process reaches the Bot API with: one keep-alive pool for both bots,
    on the lean transport (tgms_tui/backend/lean_transport.py) unless TGMS_HTTP_TRANSPORT=httpx asks for
    httpx's own, a fallback should the lean one ever misbehave against a server.

    httpx ignores the proxy variables (HTTPS_PROXY, ALL_PROXY, ...) for a client given its own
    transport, so when one applies to the Bot API's host httpx's transport is used: it proxies."""
    if settings.http_transport == "httpx" or proxy_applies(settings.telegram_api_base):
        limits = httpx.Limits(
            max_connections=MAX_CONNECTIONS,
            max_keepalive_connections=MAX_CONNECTIONS,
            keepalive_expiry=KEEPALIVE_SECONDS,
        )
        return httpx.AsyncClient(timeout=DEFAULT_TIMEOUT, limits=limits)
    transport = LeanTransport(max_connections=MAX_CONNECTIONS, keepalive_expiry=KEEPALIVE_SECONDS)
    return httpx.AsyncClient(timeout=DEFAULT_TIMEOUT, transport=transport)


def lean_transport_for(http: httpx.AsyncClient, api_base: str) -> LeanTransport | None:
    """The lean transport `http` routes the Bot API's URL to (httpx's own routing: mounts, proxies),
    or None: the Bot API client then sends its JSON calls to it directly."""
    transport = http._transport_for_url(httpx.URL(api_base))  # httpx has no public form of its routing
    return transport if isinstance(transport, LeanTransport) else None


def bot_burst(settings: Settings) -> float:
    """The bot bucket's capacity. With capacity 1 every moment a sender is late to take the next
    token (scheduling, a database round trip) is lost for good, and at 30/s the achieved rate sinks
    well below the configured one; a tenth of a second of tokens (at least 2) absorbs that lateness
    while any one-second window still stays within a few messages of the rate (Telegram itself
    tolerates short bursts)."""
    return max(2.0, round(settings.rate_per_second / 10))


class Bots:
    """The Telegram clients of one worker process (one per configured token) and its rate limiter."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._tokens: dict[str, str] = settings.bot_tokens()
        self._http: httpx.AsyncClient | None = None
        self._clients: dict[str, TelegramClient] = {}
        self._limiter: RateLimiter | None = None
        self._db: AsyncConnectionPool | None = None
        self._ready = asyncio.Lock()

    async def ready(self, db: AsyncConnectionPool) -> Bots:
        """Open the shared resources on first use (idempotent); `db` is the worker's own pool."""
        if self._db is None:
            async with self._ready:
                if self._db is None:
                    pool = AsyncConnectionPool(
                        db.conninfo,
                        kwargs={"autocommit": True},
                        min_size=1,
                        max_size=AUTOCOMMIT_POOL_SIZE,
                        open=False,
                        name="tgms-autocommit",
                        timeout=10.0,
                    )
                    await pool.open(wait=False)
                    self._limiter = RateLimiter.from_settings(pool, self.settings, burst=bot_burst(self.settings))
                    self._db = pool
        return self

    @property
    def db(self) -> AsyncConnectionPool:
        """The autocommit pool: one statement, one round trip (call `ready()` first)."""
        if self._db is None:
            raise RuntimeError("Bots.ready() was not awaited")
        return self._db

    @property
    def limiter(self) -> RateLimiter:
        if self._limiter is None:
            raise RuntimeError("Bots.ready() was not awaited")
        return self._limiter

    def __repr__(self) -> str:
        return f"Bots(configured={sorted(self._tokens)!r})"

    @property
    def management_role(self) -> BotRole | None:
        """The bot that manages groups: the TGMS bot, or the main bot when it is the only one."""
        if "tgms" in self._tokens:
            return "tgms"
        if "main" in self._tokens:
            return "main"
        return None

    def resolve_role(self, requested: Any, default: BotRole | None = None) -> BotRole:
        """The configured role to use for `requested` ('main'/'tgms'/None); PermanentFailure if none is."""
        if requested in ROLES and requested in self._tokens:
            return requested
        if requested not in (None, *ROLES):
            raise PermanentFailure(f"unknown bot {requested!r} in job payload (expected 'main' or 'tgms')")
        fallback = default if default in self._tokens else self.management_role
        if fallback is None:
            raise PermanentFailure("no bot token configured: set TGMS_BOT_TOKEN and/or BOT_TOKEN")
        if requested is not None:
            log.warning("bot %r has no token configured; using the %r bot instead", requested, fallback)
        return fallback

    def client(self, role: BotRole, *, paced: bool = True) -> TelegramClient:
        """The client of `role` (must be configured), sharing this process's HTTP pool and limiter.

        A paced client takes a rate-limit token before each message it sends and pauses the bot on a
        429. `paced=False` is for callers that take the tokens themselves (the broadcast sender must
        wait for its turn *before* recording the intent to send) and so handle 429 pauses too."""
        key = role if paced else f"{role}:unpaced"
        client = self._clients.get(key)
        if client is None:
            if self._http is None:
                self._http = bot_api_http(self.settings)
            client = TelegramClient(
                self._tokens[role],
                api_base=self.settings.telegram_api_base,
                http_client=self._http,
                limiter=self.limiter if paced else None,
                direct=lean_transport_for(self._http, self.settings.telegram_api_base),
            )
            self._clients[key] = client
        return client

    async def aclose(self) -> None:
        self._clients.clear()
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._db is not None:
            await self._db.close()
            self._db = None


def build_services(settings: Settings) -> Services:
    """The `JobContext.services` of a worker process."""
    return Services(bots=Bots(settings))


async def bots_for(ctx: JobContext) -> Bots:
    """This process's `Bots`, ready to use."""
    if ctx.services.bots is None:
        ctx.services.bots = Bots(ctx.settings)
    return await ctx.services.bots.ready(ctx.db)


async def client_for(ctx: JobContext, job: Job | None = None, default: BotRole = "tgms") -> TelegramClient:
    """The client that answers `job`: its payload's bot, else `default` (tgms jobs: the TGMS bot)."""
    bots = await bots_for(ctx)
    requested = job.payload.get("bot") if job is not None and isinstance(job.payload, dict) else None
    return bots.client(bots.resolve_role(requested, default))


T = TypeVar("T")


async def job_row(
    ctx: JobContext, job: Job, key: str, what: str, load: Callable[[AsyncConnection[Any], int], Awaitable[T | None]]
) -> tuple[Bots, T]:
    """The bots and the row a job's payload names by the integer `key`, loaded with `load`. A payload
    without the id, or a row gone, can never succeed: PermanentFailure ("no <what> <id>")."""
    try:
        row_id = int(job.payload[key])
    except (KeyError, TypeError, ValueError):
        raise PermanentFailure(f"payload needs an integer {key}") from None
    bots = await bots_for(ctx)
    async with bots.db.connection() as conn:
        row = await load(conn, row_id)
    if row is None:
        raise PermanentFailure(f"no {what} {row_id}")
    return bots, row


# Longer 429 waits than this snooze the whole job instead of holding a worker slot.
MAX_INLINE_RETRY_AFTER = 60.0


async def call_in_chat(
    ctx: JobContext,
    client: TelegramClient,
    chat_id: int,
    call: Callable[[int], Awaitable[T]],
    *,
    attempts: int = 3,
) -> tuple[T, int]:
    """Make one idempotent, non-message Bot API call about `chat_id` (counts, member lookups, bans)
    the way every such call must go: through the bot's shared rate bucket; on 429 wait (the client
    paused the bot for everyone) and retry, not counted; on group→supergroup migration rewrite the
    group id everywhere and retry with the new id; temporary errors a few times with backoff.
    Returns the result and the chat id that answered."""
    limiter = (await bots_for(ctx)).limiter
    failures = 0
    while True:
        await limiter.acquire(client.bot_key)
        try:
            return await call(chat_id), chat_id
        except RetryAfter as exc:
            if exc.retry_after > MAX_INLINE_RETRY_AFTER:
                raise Snooze(exc.retry_after, f"429 from Telegram: retry after {exc.retry_after:g}s") from None
            continue
        except ChatMigrated as exc:
            async with ctx.db.connection() as conn:
                await groups.rewrite_id(conn, chat_id, exc.new_chat_id)
            chat_id = exc.new_chat_id
        except TelegramError as exc:
            failures += 1
            if not exc.retryable or failures >= attempts:
                raise
            await asyncio.sleep(min(10.0, 0.5 * 2**failures))
