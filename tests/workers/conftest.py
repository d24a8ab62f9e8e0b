"""Fixtures for worker tests: the real pipeline (simulator → webhook → queue → worker processes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.token_guard import register_secret

from .harness import ADMIN_KEY, WEBHOOK_SECRET, Stack


@pytest.fixture
def stack(db_url: str, tmp_path: Path) -> Iterator[Stack]:
    """Simulator (two bots: main and TGMS, flood limits off) and the webhook server; start workers
    with `stack.start_worker("main" | "tgms", **env)`."""
    with Stack(db_url, tmp_path) as s:
        for secret in (s.main_token, s.tgms_token, WEBHOOK_SECRET, ADMIN_KEY):
            register_secret(secret)
        yield s
