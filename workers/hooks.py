"""`tgms_deliver_hooks`: deliver event webhooks, one lane (a subscription and a group) per job.

A job drains its lane oldest first (backend/hooks.py hands out the head only), so a receiver sees each
group's events in order, at least once. A failed attempt holds the lane and the job snoozes until the
retry is due (exponential backoff), so a dead receiver costs no worker slot while it waits.

A slow or dead receiver never slows the worker's other jobs:
- each attempt has a short total time limit (TGMS_HOOKS_TIMEOUT) and the response body is not read;
- at most TGMS_HOOKS_CONCURRENCY attempts run at once in one process; a quarter as many drainers wait
  (half a second at most) for a free slot, and any other snoozes at once, before any database work,
  for about one recent attempt's time, without counting a retry: a drainer holds a worker job slot
  for an attempt, a wait of half a second, or a few statements, never while its lane waits;
- no database connection is held during the HTTP call;
- a drainer works in slices that end before the job type's time limit.

Every attempt resolves the receiver's host again, checks each address (hook_targets.py) and connects
to the checked address itself; redirects are not followed (a 3xx is a failed attempt).

`tgms_hooks_daily` emits the fleet.daily summary once a day; `tgms_hooks_sweep` (every two minutes)
gives a lane whose drainer job was lost (failed after its retries, cancelled) a new one.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httpx

from tgms_tui.backend import hook_targets, hooks
from tgms_tui.backend.queue import Job

from .bots import bots_for
from .runner import JobContext, PermanentFailure, Snooze, time_left

log = logging.getLogger(__name__)

JOB_TYPE = hooks.JOB_TYPE
DAILY_JOB = hooks.DAILY_JOB
SWEEP_JOB = hooks.SWEEP_JOB
DAILY = 86400.0
SWEEP_EVERY = 120.0
# Seconds of database lease on a delivery being sent beyond the attempt's own time limit.
LEASE_MARGIN = 10.0
USER_AGENT = "TGMS-Hooks/1"
# How long a drainer waits for a sending slot before it snoozes (leaving its worker slot).
SLOT_WAIT_SECONDS = 0.5


@dataclass(frozen=True)
class AttemptResult:
    ok: bool
    status_code: int | None
    latency_ms: float
    error: str | None


@dataclass
class HookSender:
    """One per worker process: the HTTP clients (one per receiver host, so a TLS connection made for
    one name is never reused for another at the same address) and the concurrency bound."""

    timeout: float
    concurrency: int
    allow_private: bool
    slots: asyncio.Semaphore = field(init=False)
    clients: dict[tuple[str, str], httpx.AsyncClient] = field(default_factory=dict)
    waiting: int = 0  # drainers waiting for a slot
    # A moving average of recent attempts' durations (seconds): how soon a sending slot frees up.
    attempt_seconds: float = 0.05
    refusals: deque[float] = field(default_factory=deque)  # when drainers found every slot busy

    def busy_snooze(self) -> float:
        """How long a drainer that found every slot busy stays away: the time the lanes refused
        lately need to take their turns — recent refusals / TGMS_HOOKS_CONCURRENCY attempts of
        recent length (a few milliseconds for healthy receivers, up to TGMS_HOOKS_TIMEOUT for hanging
        ones) — so that lanes waiting for a slot neither spin through the queue nor wait longer than
        they need."""
        now = time.monotonic()
        per_attempt = min(self.timeout, max(0.05, self.attempt_seconds))
        self.refusals.append(now)
        while self.refusals and self.refusals[0] < now - 2 * per_attempt:
            self.refusals.popleft()
        turns = max(1.0, len(self.refusals) / self.concurrency)
        return min(60.0, per_attempt * turns) * random.uniform(0.5, 1.5)

    def __post_init__(self) -> None:
        self.slots = asyncio.Semaphore(self.concurrency)

    async def take_slot(self) -> bool:
        """One of the `concurrency` sending slots, waiting a little for one to free up; False when
        none did (the drainer then snoozes). At most a quarter as many drainers wait, so deliveries
        hold at most 1.25 times TGMS_HOOKS_CONCURRENCY of the worker's job slots (default 10 of 16)."""
        if not self.slots.locked():
            await self.slots.acquire()
            return True
        if self.waiting >= max(1, self.concurrency // 4):
            return False
        self.waiting += 1
        try:
            async with asyncio.timeout(SLOT_WAIT_SECONDS):
                await self.slots.acquire()
            return True
        except TimeoutError:
            return False
        finally:
            self.waiting -= 1

    def _client(self, target: hook_targets.Target) -> httpx.AsyncClient:
        key = (target.url.scheme, target.url.host)
        client = self.clients.get(key)
        if client is None:
            # trust_env=False: a proxy from the environment would connect to the name, not the address
            # TGMS checked.
            client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout),
                follow_redirects=False,
                trust_env=False,
                limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
            )
            self.clients[key] = client
        return client

    async def attempt(self, send: hooks.Send) -> AttemptResult:
        """POST the event once; never raises for the receiver's faults."""
        result = await self._post(send)
        self.attempt_seconds = 0.8 * self.attempt_seconds + 0.2 * result.latency_ms / 1000.0
        return result

    async def _post(self, send: hooks.Send) -> AttemptResult:
        started = time.perf_counter()

        def elapsed() -> float:
            return (time.perf_counter() - started) * 1000.0

        try:
            target = await hook_targets.resolve(send.url, allow_private=self.allow_private, timeout=self.timeout)
        except hook_targets.TargetRefused as exc:
            return AttemptResult(False, None, elapsed(), f"refused: {exc}")
        timestamp = int(time.time())
        headers = {
            "Host": target.host_header(),
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            hook_targets.SIGNATURE_HEADER: hook_targets.sign(send.secret, timestamp, send.body),
            hook_targets.EVENT_HEADER: send.event_type,
            hook_targets.DELIVERY_HEADER: str(send.delivery_id),
        }
        extensions: dict[str, Any] = {}
        if target.url.scheme == "https":
            extensions["sni_hostname"] = target.url.host  # the certificate is checked against the name
        client = self._client(target)
        try:
            async with asyncio.timeout(self.timeout):
                request = client.build_request(
                    "POST", target.pinned_url(), content=send.body, headers=headers, extensions=extensions
                )
                response = await client.send(request, stream=True)
                await response.aclose()  # the body is not read: a receiver cannot make us download
        except TimeoutError:
            return AttemptResult(False, None, elapsed(), f"timed out after {self.timeout:g} s")
        except httpx.HTTPError as exc:
            return AttemptResult(False, None, elapsed(), f"{type(exc).__name__}: {_short(exc)}")
        code = response.status_code
        if 200 <= code < 300:
            return AttemptResult(True, code, elapsed(), None)
        what = "redirect (not followed)" if 300 <= code < 400 else "non-2xx answer"
        return AttemptResult(False, code, elapsed(), f"HTTP {code}: {what}")

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()
        self.clients.clear()


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text[:200]


def sender_for(ctx: JobContext) -> HookSender:
    if ctx.services.hooks is None:
        s = ctx.settings
        ctx.services.hooks = HookSender(s.hooks_timeout, s.hooks_concurrency, s.hooks_allow_private)
    return ctx.services.hooks


def _lane(payload: dict[str, Any]) -> tuple[int, str]:
    try:
        sub, lane = int(payload["subscription_id"]), payload["lane"]
    except (KeyError, TypeError, ValueError):
        raise PermanentFailure("payload needs subscription_id (an integer) and lane") from None
    if not isinstance(lane, str):
        raise PermanentFailure("lane must be a string")
    return sub, lane


async def deliver_hooks(ctx: JobContext, job: Job) -> None:
    """Drain one lane: take its head, send it, record the outcome, go on; snooze on a failure, a
    wait, or when no sending slot comes free. A slot is held from taking the head (one statement)
    to the end of its HTTP attempt."""
    subscription_id, lane = _lane(job.payload)
    sender = sender_for(ctx)
    lease = sender.timeout + LEASE_MARGIN
    # Each step is one statement: the autocommit pool makes it one round trip.
    db = (await bots_for(ctx)).db
    attempts = 0
    while True:
        left = time_left()
        if attempts and left is not None and left < 2 * sender.timeout + 5:  # (one attempt at least)
            raise Snooze(0.0, "slice ended; continuing")
        # The slot first: a drainer that gets none leaves without touching the database.
        if not await sender.take_slot():
            raise Snooze(sender.busy_snooze(), "hook deliveries at TGMS_HOOKS_CONCURRENCY")
        try:
            async with db.connection() as conn:
                step = await hooks.next_delivery(conn, subscription_id, lane, lease)
            if step is None:
                return
            if isinstance(step, hooks.Wait):
                raise Snooze(max(0.05, step.seconds), "waiting for the lane's next attempt")
            result = await sender.attempt(step)
            attempts += 1
        finally:
            sender.slots.release()
        async with db.connection() as conn:
            outcome = await hooks.record_attempt(
                conn,
                step,
                ok=result.ok,
                status_code=result.status_code,
                latency_ms=result.latency_ms,
                error=result.error,
            )
        if outcome.status == "retry":
            log.info(
                "hook delivery %d (subscription %d) attempt %d failed: %s; retry in %.0f s",
                step.delivery_id, subscription_id, step.attempt, result.error, outcome.delay,
            )  # fmt: skip
            raise Snooze(outcome.delay, f"delivery {step.delivery_id} failed: {result.error}")
        if outcome.status == "failing":
            log.warning("hook subscription %d failed for 24 hours: paused as failing", subscription_id)
        # then on: the next step marks the lane idle (paused subscription), or finds more to send


async def fleet_daily(ctx: JobContext, job: Job) -> None:
    """The fleet.daily event (when any subscription wants it) and the outbox's pruning."""
    async with ctx.db.connection() as conn:
        event_id = await hooks.daily_summary(conn)
    log.info("fleet.daily %s", "emitted" if event_id else "not wanted by any subscription")


async def sweep_lanes(ctx: JobContext, job: Job) -> None:
    async with ctx.db.connection() as conn:
        revived = await hooks.sweep_lanes(conn)
    if revived:
        log.warning("%d hook lane(s) had lost their delivery job: rescheduled", revived)


__all__ = ["DAILY_JOB", "JOB_TYPE", "SWEEP_JOB", "HookSender", "deliver_hooks", "fleet_daily", "sweep_lanes"]
