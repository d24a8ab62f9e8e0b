"""Bot API methods of the webhook side: setWebhook, deleteWebhook, getWebhookInfo, getUpdates.

setWebhook answers "Webhook was set" / "Webhook is already set" (identical parameters), validates
the secret token like the server, and refuses changes closer than 1 s apart with 429 while flood
limits are on. getUpdates long-polls the same per-bot queue the webhook sender drains, answers 409
while a webhook is set, and a newer poll ends an older one with 409 at once.
"""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

from telegram_sim import objects
from telegram_sim.context import ASYNC_METHODS, CallContext, Described, method
from telegram_sim.errors import bad_request, conflict, too_many_requests
from telegram_sim.model import Bot
from telegram_sim.params import Params, UploadedFile

_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]+$")


@method("setWebhook")
def set_webhook(ctx: CallContext) -> Described:
    params, bot, config = ctx.params, ctx.bot, ctx.state.config
    url = (params.string("url") or "").strip()
    secret = params.string("secret_token") or None
    if secret is not None:
        if len(secret) > 256:
            raise bad_request("secret token is too long")
        if not _SECRET_RE.match(secret):
            raise bad_request("secret token contains unallowed characters")
    try:
        max_connections = params.integer("max_connections")
    except ValueError:
        max_connections = None
    max_connections = min(max(max_connections or config.default_max_connections, 1), 100)
    allowed = _allowed_updates(params)
    if url:
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https"):
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        if not parts.hostname:
            raise bad_request("bad webhook: Failed to resolve host: Name or service not known")
    hook = bot.webhook
    drop = params.flag("drop_pending_updates")
    certificate = isinstance(params.raw("certificate"), UploadedFile)
    ip_address = (params.string("ip_address") or "").strip() or None
    unchanged = (
        url == hook.url
        and secret == hook.secret_token
        and not certificate
        and (not url or (max_connections == hook.max_connections and ip_address in (None, hook.ip_address)))
    )
    if unchanged:
        if allowed is not None:
            bot.allowed_updates = allowed
        if drop:
            _drop_pending(bot)
        ctx.state.notify(bot.id)
        return Described(True, "Webhook is already set" if url else "Webhook is already deleted")
    now = time.monotonic()
    if config.enforce_flood_limits and now - hook.set_at < config.set_webhook_min_interval:
        raise too_many_requests(1)
    hook.set_at = now
    if url != hook.url:
        hook.last_error_date = None
        hook.last_error_message = None
    hook.url = url
    hook.secret_token = secret if url else None
    hook.max_connections = max_connections
    hook.ip_address = (ip_address or "127.0.0.1") if url else None
    hook.has_custom_certificate = certificate and bool(url)
    if allowed is not None:
        bot.allowed_updates = allowed
    if drop:
        _drop_pending(bot)
    ctx.state.notify(bot.id)
    return Described(True, "Webhook was set" if url else "Webhook was deleted")


@method("deleteWebhook")
def delete_webhook(ctx: CallContext) -> Described:
    bot = ctx.bot
    if ctx.params.flag("drop_pending_updates"):
        _drop_pending(bot)
    if not bot.webhook.url:
        return Described(True, "Webhook is already deleted")
    bot.webhook.url = ""
    bot.webhook.secret_token = None
    bot.webhook.has_custom_certificate = False
    bot.webhook.last_error_date = None
    bot.webhook.last_error_message = None
    bot.webhook.set_at = time.monotonic()
    ctx.state.notify(bot.id)
    return Described(True, "Webhook was deleted")


@method("getWebhookInfo")
def get_webhook_info(ctx: CallContext) -> dict:
    return objects.webhook_info_json(ctx.bot)


def _allowed_updates(params: Params) -> list[str] | None:
    if "allowed_updates" not in params:
        return None
    value = params.json("allowed_updates")
    if not isinstance(value, list):
        return None
    return [str(item) for item in value]


def _drop_pending(bot: Bot) -> None:
    bot.pending = [p for p in bot.pending if p.in_flight]


WEBHOOK_ACTIVE = "can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
POLL_SUPERSEDED = "terminated by other getUpdates request; make sure that only one bot instance is running"


async def get_updates(ctx: CallContext) -> list:
    """Long polling: confirm updates below `offset`, return up to `limit`, wait up to `timeout`."""
    state, bot, params = ctx.state, ctx.bot, ctx.params
    try:
        offset = params.integer("offset") or 0
        limit = params.integer("limit") or 100
    except ValueError:
        offset, limit = 0, 100
    limit = min(max(limit, 1), 100)
    timeout = min(max(params.number("timeout"), 0.0), state.config.max_long_poll)
    with state.lock:
        if bot.webhook.url:
            raise conflict(WEBHOOK_ACTIVE)
        allowed = _allowed_updates(params)
        if allowed is not None:
            bot.allowed_updates = allowed
        if offset > 0:
            bot.pending = [p for p in bot.pending if p.update_id >= offset]
        elif offset < 0:
            bot.pending = bot.pending[offset:]
        bot.poll_generation += 1
        generation = bot.poll_generation
        state.notify(bot.id)  # wakes an older poll, which then answers 409
    deadline = time.monotonic() + timeout
    while True:
        with state.lock:
            if bot.poll_generation != generation:
                raise conflict(POLL_SUPERSEDED)
            ready = [p.payload for p in bot.pending][:limit]
        remaining = deadline - time.monotonic()
        if ready or remaining <= 0 or ctx.waiter is None:
            return ready
        await ctx.waiter.wait_for_updates(bot.id, remaining)


ASYNC_METHODS["getupdates"] = ("getUpdates", get_updates)
