"""Fixtures for our Bot API client's tests: a real simulator over HTTP, a clean world per test, and
every log record at DEBUG (httpx included) checked for the bot token after each test."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from telegram_sim.server import SimServer
from tests.client.cases import World
from tests.support import simulator_fixtures
from tests.token_guard import find_leaks

sim_server, sim = simulator_fixtures(bots=1, seed=11)


@pytest.fixture
def world(sim: SimServer) -> World:
    return World(sim.control, sim.bot.id)


@pytest.fixture(autouse=True)
def _no_token_in_debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every record, httpx's request lines included, is captured at DEBUG and must carry no token."""
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    yield
    leaks = [(r.name, what) for r in caplog.records for what in find_leaks(caplog.handler.format(r))]
    assert not leaks, f"token in log records: {leaks}"
