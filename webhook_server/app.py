"""The webhook server's Starlette app: Telegram's only door into TGMS.

Routes:
- POST /api/webhook         updates of the main bot (BOT_TOKEN)
- POST /api/webhook/tgms    updates of the group-management bot (TGMS_BOT_TOKEN)
- POST /api/tgms/send       admin broadcast (x-api-key)
- /api/tgms/bans[/{user}]   the fleet's ban list (x-api-key; bans_api.py)
- GET  /api/tgms/broadcasts[/{id}], POST /api/tgms/broadcasts/{id}/cancel|edit   (admin_broadcasts.py)
- GET  /api/tgms/broadcasts/{id}/variants, POST .../send-winner   (admin_variants.py)
- GET|HEAD /r/{token}       a tracked link: count the click, 302 to its URL (public; click_redirects.py)
- GET  /healthz /readyz /metrics   (behind TGMS_METRICS_ALLOW_NETWORKS when set)

Both bots share one secret (TGMS_WEBHOOK_SECRET); the path says which bot an update came from, and
the job records it so the worker answers with the right bot. Without a secret anyone who finds the URL
could inject updates (e.g. fake join requests), so the app refuses to start without one unless
`allow_insecure` is set explicitly.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tgms_tui.backend.config import ConfigError, Settings, load_settings
from tgms_tui.backend.db import database_url, open_pool

from . import admin_broadcasts
from .access import NOT_ALLOWED, SourceAllowList, client_host
from .admin import AdminSend
from .admin_variants import AdminVariants
from .bans_api import AdminBans
from .click_redirects import ClickRedirects
from .hooks_api import HooksApi
from .intake import UpdateIntake
from .join_gate_api import JoinGateApi
from .runtime import Runtime
from .telegram_endpoint import RETRY_AFTER_SECONDS, TelegramWebhook

log = logging.getLogger(__name__)

# Set by `tgms webhook --insecure-no-secret` for the worker processes uvicorn spawns (--workers > 1).
INSECURE_ENV = "TGMS_WEBHOOK_ALLOW_NO_SECRET"
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class WebhookApp(Starlette):
    """Starlette with a direct path for Telegram's POSTs: they skip the router and the exception
    middlewares (a measurable share of the CPU per update at thousands of updates per second). The
    endpoints answer every expected failure themselves; anything else still reaches uvicorn's 500."""

    def __init__(self, *args: Any, fast_paths: dict[str, ASGIApp] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fast_paths = dict(fast_paths or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self._fast_paths.get(scope["path"])
            if endpoint is not None:
                scope["app"] = self
                await endpoint(scope, receive, send)
                return
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        # Every other request (admin API, health, metrics) is timed under its route's template, so
        # the label set stays the app's own routes whatever paths clients make up.
        started = time.perf_counter()
        status = [500]

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await super().__call__(scope, receive, send_status)
        finally:
            runtime = getattr(self.state, "runtime", None)
            if runtime is not None:
                runtime.metrics.observe_http(
                    self._route_of(scope), scope["method"], status[0], time.perf_counter() - started
                )

    def _route_of(self, scope: Scope) -> str:
        for route in self.router.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL and isinstance(route, Route):
                return route.path
        return "unmatched"


def require_secret(settings: Settings, *, allow_insecure: bool = False) -> None:
    """ConfigError unless TGMS_WEBHOOK_SECRET is set or insecure operation was asked for."""
    if not settings.webhook_secret and not allow_insecure:
        raise ConfigError(
            "TGMS_WEBHOOK_SECRET",
            "is not set; the webhook would accept updates from anyone "
            "(set it, or pass --insecure-no-secret for local experiments only)",
        )


def allow_listed(
    endpoint: Callable[[Request], Awaitable[Response]], allow: SourceAllowList
) -> Callable[[Request], Awaitable[Response]]:
    """`endpoint`, answering 403 to clients outside `allow` (an empty list: everyone is allowed)."""
    if not allow:
        return endpoint

    async def guarded(request: Request) -> Response:
        if not allow.allows(client_host(request.scope)):
            return JSONResponse({"detail": NOT_ALLOWED}, status_code=403)
        return await endpoint(request)

    return guarded


def create_app(
    settings: Settings,
    url: str | None = None,
    *,
    allow_insecure: bool = False,
    pool_size: int = 4,
    intake_writers: int = 1,
) -> Starlette:
    """Build the app. `url` defaults to the configured database (DATABASE_URL or the embedded one);
    the lifespan opens the pool, migrations are the caller's job (`tgms webhook` runs them first)."""
    require_secret(settings, allow_insecure=allow_insecure)
    runtime = Runtime()
    db_url = url or database_url(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Two pools: the intake's writers never wait behind an admin request, and their connections
        # carry the intake's own settings (see intake.py).
        pool = await open_pool(db_url, min_size=1, max_size=pool_size, name="tgms-webhook")
        intake_pool = await open_pool(
            db_url, min_size=intake_writers, max_size=intake_writers, name="tgms-webhook-intake"
        )
        intake = UpdateIntake(intake_pool, runtime.metrics, writers=intake_writers)
        await intake.start()
        runtime.pool, runtime.intake = pool, intake
        try:
            yield
        finally:
            await intake.stop()
            runtime.intake = None
            runtime.pool = None
            await intake_pool.close()
            await pool.close()

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        try:
            async with runtime.require_pool().connection(timeout=2.0) as conn:
                await conn.execute("SELECT 1")
        except Exception as exc:  # any failure means "not ready"; never a 500
            log.info("not ready: %s", type(exc).__name__)
            return JSONResponse(
                {"status": "unavailable", "database": "unreachable"},
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        return JSONResponse({"status": "ready", "database": "ok"})

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(runtime.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    secret = settings.webhook_secret
    telegram = {
        "/api/webhook": TelegramWebhook("main", secret, runtime),
        "/api/webhook/tgms": TelegramWebhook("tgms", secret, runtime),
    }
    admin = AdminSend(
        runtime,
        settings.admin_api_key,
        settings.admin_allow_networks,
        test_chat_id=settings.test_chat_id,
        public_base_url=settings.public_base_url,
    )
    monitors = SourceAllowList(settings.metrics_allow_networks)
    routes = [
        *(Route(path, endpoint, methods=["POST"]) for path, endpoint in telegram.items()),
        Route("/api/tgms/send", admin.handle, methods=["POST"]),
        *AdminVariants(runtime, admin).routes(),  # before the broadcasts' generic /{id}/{action}
        *admin_broadcasts.routes(runtime, admin),
        *ClickRedirects(runtime).routes(),
        *JoinGateApi(runtime, admin).routes(),
        *AdminBans(runtime, settings.admin_api_key, settings.admin_allow_networks).routes(),
        *HooksApi(runtime, admin, settings).routes(),
        Route("/healthz", allow_listed(healthz, monitors)),
        Route("/readyz", allow_listed(readyz, monitors)),
        Route("/metrics", allow_listed(metrics, monitors)),
    ]
    app = WebhookApp(routes=routes, lifespan=lifespan, fast_paths=dict(telegram))
    app.state.runtime = runtime
    return app


def app_from_env() -> Starlette:
    """uvicorn factory (`webhook_server.app:app_from_env`, used with --workers > 1): settings from the
    environment; the parent `tgms webhook` already migrated and exported the database URL."""
    return create_app(load_settings(), allow_insecure=os.environ.get(INSECURE_ENV) == "1")
