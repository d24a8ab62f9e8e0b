"""The collector pause around bulk fetches: always undone, also when fetches interleave, and never
turning on a collector someone else had turned off."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from tgms_tui.backend.bulk_rows import collector_paused


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


def test_paused_inside_resumed_after_also_on_error() -> None:
    gc.enable()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("fetch failed")
    assert gc.isenabled()


def test_interleaved_fetches_resume_only_when_the_last_one_ends() -> None:
    gc.enable()
    first, second = collector_paused(), collector_paused()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # two coroutines: the first to start ends first
    assert not gc.isenabled(), "the second fetch is still building rows"
    second.__exit__(None, None, None)
    assert gc.isenabled()


def test_a_collector_turned_off_elsewhere_stays_off() -> None:
    gc.disable()
    with collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()
