"""TUI test helpers: a seeded database and a way to wait for the live app without sleeping blindly."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from textual.pilot import Pilot

from tgms_tui.app import TGMSApp
from tgms_tui.backend.config import Settings

from .seed import seed

SIZE = (140, 45)


@pytest.fixture
def seeded_url(db_url: str) -> Iterator[str]:
    seed(db_url)
    yield db_url


def make_app(url: str, *, read_only: bool = False, **kwargs: object) -> TGMSApp:
    settings = Settings(rate_per_second=5.0, group_delay_seconds=3.0)
    return TGMSApp(url=url, settings=settings, read_only=read_only, **kwargs)  # type: ignore[arg-type]


async def wait_until(
    pilot: Pilot[Any], condition: Callable[[], object], timeout: float = 8.0, what: str = "condition"
) -> None:
    """Let the app run until `condition()` is truthy (the app refreshes by itself)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(0.05)
