"""Fixtures for the long-polling intake: the simulator with no webhook set, `tgms poll` processes,
the TGMS worker, one database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.token_guard import register_secret
from tests.workers.harness import ADMIN_KEY, WEBHOOK_SECRET, Stack


@pytest.fixture
def stack(db_url: str, tmp_path: Path) -> Iterator[Stack]:
    """Simulator (two bots, flood limits off, no webhook) on the test's database; no process yet."""
    with Stack(db_url, tmp_path, webhook=False) as s:
        for secret in (s.main_token, s.tgms_token, WEBHOOK_SECRET, ADMIN_KEY):
            register_secret(secret)
        yield s
