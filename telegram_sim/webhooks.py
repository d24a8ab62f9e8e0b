"""Telegram's webhook side: POST each bot's queued updates to its webhook URL, and redeliver.

One worker task per bot, woken by the state whenever that bot's queue or webhook changes. As the
Bot API server does, updates of one queue (a chat, or a user for join requests/chat_member) go out
strictly in order, one at a time; different queues go out concurrently up to the webhook's
`max_connections`. Any 2xx acknowledges; anything else (status, refused connection, timeout) is
retried: first retry at once, then doubling delays up to a cap, or after the receiver's
`Retry-After` when it sends one. All deliveries share one keep-alive client (webhook_http.py) and
nothing sleeps on the happy path, so an update reaches the receiver within a millisecond or so of
being queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from telegram_sim.model import PendingUpdate
from telegram_sim.state import SimState
from telegram_sim.webhook_http import DeliveryError, WebhookPoster

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
log = logging.getLogger("telegram_sim.webhooks")
ReplyExecutor = Callable[[int, dict[str, Any]], Awaitable[None]]


@dataclass
class DeliveryStats:
    delivered: int = 0
    failed_attempts: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=5000))

    def summary(self) -> dict[str, Any]:
        values = sorted(self.latencies_ms)

        def pct(p: float) -> float | None:
            if not values:
                return None
            return round(values[min(len(values) - 1, int(p * (len(values) - 1) + 0.5))], 3)

        return {
            "delivered": self.delivered,
            "failed_attempts": self.failed_attempts,
            "latency_ms_p50": pct(0.5),
            "latency_ms_p95": pct(0.95),
            "latency_ms_max": round(values[-1], 3) if values else None,
        }


class WebhookDispatcher:
    def __init__(self, state: SimState, reply_executor: ReplyExecutor | None = None) -> None:
        self.state = state
        self.reply_executor = reply_executor
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: WebhookPoster | None = None
        self._wake: dict[int, asyncio.Event] = {}
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._deliveries: set[asyncio.Task[None]] = set()
        self._poll_waiters: dict[int, set[asyncio.Future[None]]] = {}
        self._in_flight: dict[int, int] = {}  # bot id -> deliveries under way
        self.stats: dict[int, DeliveryStats] = {}
        self.attempts: deque[dict[str, Any]] = deque(maxlen=state.config.max_recorded_deliveries)

    @property
    def running(self) -> bool:
        return self._loop is not None

    async def start(self) -> None:
        """Bind to the running loop (idempotent) and start a worker for every known bot."""
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._client = WebhookPoster(self.state.config.webhook_timeout)
        self.state.add_listener(self._on_change)
        with self.state.lock:
            bot_ids = list(self.state.bots)
        for bot_id in bot_ids:
            self._wake_bot(bot_id)

    async def stop(self) -> None:
        if self._loop is None:
            return
        self.state.remove_listener(self._on_change)
        tasks = [*self._workers.values(), *self._deliveries]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()
        self._deliveries.clear()
        self._in_flight.clear()
        with self.state.lock:
            for bot in self.state.bots.values():
                for pending in bot.pending:
                    pending.in_flight = False
        if self._client is not None:
            await self._client.aclose()
        self._client = None
        self._loop = None

    # --- wake-ups ------------------------------------------------------------------------------

    def _on_change(self, bot_id: int) -> None:
        """State listener: may run in any thread, under the state lock."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if current is loop:
            self._wake_bot(bot_id)
        else:
            loop.call_soon_threadsafe(self._wake_bot, bot_id)

    def _wake_bot(self, bot_id: int) -> None:
        if self._loop is None:
            return
        event = self._wake.get(bot_id)
        if event is None:
            event = self._wake[bot_id] = asyncio.Event()
        event.set()
        worker = self._workers.get(bot_id)
        if worker is None or worker.done():
            self._workers[bot_id] = self._loop.create_task(self._run_bot(bot_id, event))
        for waiter in self._poll_waiters.pop(bot_id, set()):
            if not waiter.done():
                waiter.set_result(None)

    async def wait_for_updates(self, bot_id: int, timeout: float) -> None:
        """getUpdates long polling: return when the bot's queue changes or after `timeout`."""
        await self.start()
        assert self._loop is not None
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._poll_waiters.setdefault(bot_id, set()).add(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            pass
        finally:
            self._poll_waiters.get(bot_id, set()).discard(waiter)

    # --- the per-bot worker --------------------------------------------------------------------

    async def _run_bot(self, bot_id: int, event: asyncio.Event) -> None:
        while True:
            event.clear()
            delay = self._launch_ready(bot_id)
            if delay is None:
                await event.wait()
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), delay)

    def _launch_ready(self, bot_id: int) -> float | None:
        """Start deliveries that may go now; return seconds until the next retry is due (or None)."""
        assert self._loop is not None
        launches: list[tuple[PendingUpdate, str, str | None]] = []
        next_due: float | None = None
        with self.state.lock:
            bot = self.state.bots.get(bot_id)
            if bot is None or not bot.webhook.url:
                return None
            now = time.monotonic()
            in_flight = self._in_flight.get(bot_id, 0)
            if in_flight >= bot.webhook.max_connections:
                return None  # a completion wakes the worker again
            busy_queues: set[str] = set()
            for pending in bot.pending:
                if pending.queue_key in busy_queues:
                    continue
                busy_queues.add(pending.queue_key)
                if pending.in_flight:
                    continue
                if pending.not_before > now:
                    next_due = pending.not_before if next_due is None else min(next_due, pending.not_before)
                    continue
                if in_flight >= bot.webhook.max_connections:
                    break
                pending.in_flight = True
                in_flight += 1
                launches.append((pending, bot.webhook.url, bot.webhook.secret_token))
            self._in_flight[bot_id] = in_flight
        for pending, url, secret in launches:
            task = self._loop.create_task(self._deliver(bot_id, pending, url, secret))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)
        if next_due is None:
            return None
        return max(next_due - time.monotonic(), 0.0)

    async def _deliver(self, bot_id: int, pending: PendingUpdate, url: str, secret: str | None) -> None:
        assert self._client is not None
        config = self.state.config
        headers = {"Content-Type": "application/json"}
        if secret:
            headers[SECRET_HEADER] = secret
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        retry_after: float | None = None
        reply: bytes = b""
        try:
            response = await self._client.post(url, pending.body, headers, config.webhook_timeout)
            status = response.status
            if 200 <= status < 300:
                reply = response.body
            else:
                error = f"Wrong response from the webhook: {status} {_reason(status)}"
                retry_after = _retry_after(response.headers.get("retry-after"), config.webhook_retry_after_max)
        except DeliveryError as exc:
            error = str(exc)
        except Exception as exc:  # never leave an update stuck "in flight"
            log.exception("webhook delivery failed unexpectedly")
            error = f"Connection error: {type(exc).__name__}"
        latency_ms = (time.perf_counter() - started) * 1000.0
        with self.state.lock:
            pending.in_flight = False
            pending.attempts += 1
            self._in_flight[bot_id] = max(self._in_flight.get(bot_id, 0) - 1, 0)
            stats = self.stats.setdefault(bot_id, DeliveryStats())
            bot = self.state.bots.get(bot_id)
            if error is None:
                stats.delivered += 1
                stats.latencies_ms.append(latency_ms)
                if bot is not None and pending in bot.pending:
                    bot.pending.remove(pending)
            else:
                stats.failed_attempts += 1
                delay = retry_after if retry_after is not None else _backoff(pending.attempts, config)
                pending.not_before = time.monotonic() + delay
                if bot is not None:
                    bot.webhook.last_error_date = self.state.now()
                    bot.webhook.last_error_message = error
            self.attempts.append({
                "bot_id": bot_id, "update_id": pending.update_id, "kind": pending.kind,
                "attempt": pending.attempts, "ok": error is None, "status": status, "error": error,
                "at": time.time(), "latency_ms": round(latency_ms, 3),
                "queued_to_sent_ms": round((time.time() - pending.created) * 1000.0, 3),
            })  # fmt: skip
        self._wake_bot(bot_id)
        if reply and self.reply_executor is not None:
            await self._run_reply(bot_id, reply)

    async def _run_reply(self, bot_id: int, reply: bytes) -> None:
        """A webhook answer may carry one method call (`{"method": "sendMessage", ...}`)."""
        try:
            payload = json.loads(reply)
        except ValueError:
            return
        if isinstance(payload, dict) and isinstance(payload.get("method"), str) and self.reply_executor:
            await self.reply_executor(bot_id, payload)

    # --- reporting -----------------------------------------------------------------------------

    def summary(self) -> list[dict[str, Any]]:
        with self.state.lock:
            rows = []
            for bot in self.state.bots.values():
                stats = self.stats.get(bot.id, DeliveryStats())
                rows.append({
                    "bot_id": bot.id,
                    "username": bot.username,
                    "url": bot.webhook.url,
                    "pending": len(bot.pending),
                    "in_flight": sum(1 for p in bot.pending if p.in_flight),
                    "last_error_date": bot.webhook.last_error_date,
                    "last_error_message": bot.webhook.last_error_message,
                    **stats.summary(),
                })  # fmt: skip
            return rows

    def recent_attempts(self, bot_id: int | None = None, limit: int = 200) -> list[dict[str, Any]]:
        with self.state.lock:
            rows = [a for a in self.attempts if bot_id is None or a["bot_id"] == bot_id]
        return rows[-limit:] if limit > 0 else []

    def reset_stats(self) -> None:
        with self.state.lock:
            self.stats.clear()
            self.attempts.clear()


def _backoff(attempts: int, config: Any) -> float:
    if attempts <= 1:
        return float(config.webhook_retry_first_delay)
    return float(min(config.webhook_retry_base * (2 ** (attempts - 2)), config.webhook_retry_max))


def _retry_after(value: str | None, cap: float) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return min(max(seconds, 0.0), cap)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
