"""Fixtures for the webhook server: the app on a fresh database, over ASGI or under real uvicorn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from tests.support import free_port
from tgms_tui.backend.config import Settings
from webhook_server.app import create_app

SECRET = "test-webhook-secret_0123456789"
ADMIN_KEY = "test-admin-key-abcdefghijklmnop"
SECRET_HEADERS = {"X-Telegram-Bot-Api-Secret-Token": SECRET}


def make_settings(db_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"database_url": db_url, "webhook_secret": SECRET, "admin_api_key": ADMIN_KEY}
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def asgi_client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """httpx over ASGI with the app's lifespan running (pool and intake open)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://webhook.test") as client:
            yield client


@asynccontextmanager
async def served(app: Starlette, port: int | None = None) -> AsyncIterator[str]:
    """Run `app` under real uvicorn on a free loopback port (in this event loop); yields its base URL."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        else:
            raise TimeoutError("uvicorn did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


@pytest.fixture
def settings(db_url: str) -> Settings:
    return make_settings(db_url)


@pytest.fixture
async def client(settings: Settings, db_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(create_app(settings, db_url)) as c:
        yield c
