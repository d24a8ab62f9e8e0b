"""`create_app()`: the simulator as one Starlette app (Bot API + webhook sender + control API)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.routing import Route

from telegram_sim.api import BotApi
from telegram_sim.config import SimConfig
from telegram_sim.control_api import ControlApi
from telegram_sim.state import SimState
from telegram_sim.webhooks import WebhookDispatcher

ALL_METHODS = ["GET", "POST", "HEAD", "PUT", "PATCH", "DELETE"]


def create_app(state: SimState | None = None, *, config: SimConfig | None = None) -> Starlette:
    """Build the simulator app around `state` (a fresh one when None).

    The webhook dispatcher starts with the app's lifespan, or lazily on the first Bot API request
    when the app is driven without a lifespan (e.g. httpx.ASGITransport in unit tests).
    `app.state.sim` is the SimState, `app.state.dispatcher` the WebhookDispatcher.
    """
    sim = state if state is not None else SimState(config)
    dispatcher = WebhookDispatcher(sim)
    bot_api = BotApi(sim, dispatcher)
    dispatcher.reply_executor = bot_api.execute_webhook_reply
    control = ControlApi(sim, dispatcher)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await dispatcher.start()
        try:
            yield
        finally:
            await dispatcher.stop()

    routes = [
        Route("/bot{token}/{method:path}", bot_api.endpoint, methods=ALL_METHODS),  # first: the hot path
        *control.routes(),
        Route("/{path:path}", bot_api.not_found, methods=ALL_METHODS),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.sim = sim
    app.state.dispatcher = dispatcher
    return app
