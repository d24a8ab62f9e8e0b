"""`GET|HEAD /r/{token}`: a tracked link of a broadcast. Counts the click, then 302 to the stored URL.

Public (people click it in Telegram), so it is careful:
- the token is 128 random bits; anything else, or an unknown token, is a plain 404 (no hint which);
- it redirects only to the URL stored with the token, never to anything taken from the request;
- a click is one `clicks` row (link, so broadcast, variant and group, and the time): no address, no
  user agent, no cookie is stored;
- link previews are not clicks: Telegram fetches a link's page to show its preview ("TelegramBot
  (like TwitterBot)"), and so do other crawlers; a HEAD request, or a user agent naming itself a bot,
  crawler, spider or preview, or none at all, is redirected without a row;
- rows are bounded: at most CLICKS_PER_LINK_PER_MINUTE per link per minute (past that the redirect
  still works, uncounted).
"""

from __future__ import annotations

import logging
import re

import psycopg
from psycopg_pool import PoolTimeout
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from tgms_tui.backend import broadcast_variants

from .runtime import NotStarted, Runtime
from .telegram_endpoint import RETRY_AFTER_SECONDS

log = logging.getLogger(__name__)
ROUTE = "click_redirect"

# User agents of link-preview fetchers and crawlers: TelegramBot, TwitterBot, facebookexternalhit,
# Slackbot-LinkExpanding, Discordbot, WhatsApp, Googlebot, bingbot, curl-like tools ...
PREVIEW_AGENTS = re.compile(
    r"bot\b|bot/|crawler|spider|preview|facebookexternalhit|whatsapp|embedly|slurp|linkexpanding|curl|wget|"
    r"python-|httpx|go-http-client|okhttp|java/",
    re.IGNORECASE,
)
HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex, nofollow"}


def is_preview(method: str, user_agent: str) -> bool:
    """A request that is not a person's click: HEAD, no user agent, or a fetcher's user agent."""
    return method == "HEAD" or not user_agent.strip() or PREVIEW_AGENTS.search(user_agent) is not None


class ClickRedirects:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._metrics = runtime.metrics

    async def redirect(self, request: Request) -> Response:
        token = str(request.path_params["token"])
        counted = not is_preview(request.method, request.headers.get("user-agent", ""))
        try:
            async with self._runtime.require_pool().connection(timeout=5.0) as conn:
                if counted:
                    url = await broadcast_variants.record_click(conn, token)
                else:
                    url = await broadcast_variants.resolve(conn, token)
        except (psycopg.OperationalError, PoolTimeout, NotStarted) as exc:
            log.warning("click redirect: database unavailable: %s", type(exc).__name__)
            self._metrics.rejected[(ROUTE, "unavailable")] += 1
            return PlainTextResponse(
                "temporarily unavailable", status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
            )
        if url is None:
            self._metrics.rejected[(ROUTE, "not_found")] += 1
            return PlainTextResponse("not found", status_code=404, headers=HEADERS)
        return RedirectResponse(url, status_code=302, headers=HEADERS)

    def routes(self) -> list[Route]:
        return [Route("/r/{token}", self.redirect, methods=["GET", "HEAD"])]
