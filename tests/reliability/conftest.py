"""Fixtures and the results table of the reliability suite.

- `make_stack(...)`: the real pipeline of tests/workers/harness.py (simulator in this process, webhook
  and workers as subprocesses) on a given database, secrets registered with the token guard.
- `scenario(key, title, injected=, checked=)`: the test's row in the results table; pass/fail is
  taken from pytest's own report (every phase), so a row can never claim more than the test proved.
- Subprocess output: the harness writes each webhook/worker process's stdout+stderr to `*.log` files
  under the test's tmp_path; tests/token_guard.py scans those after every test of the suite. At the
  end of the session every `*.log` under pytest's base temp directory is scanned once more, for the
  numbers of row "5c" of the table (and as a last net).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from telegram_sim.config import SimConfig
from tests.token_guard import find_leaks, register_secret
from tests.workers.harness import ADMIN_KEY, WEBHOOK_SECRET, Stack

from .results import RESULTS_ENV, ScenarioRecord, render_table, write_json

_RECORD_KEY = pytest.StashKey[ScenarioRecord]()
_records: list[ScenarioRecord] = []


# ------------------------------------------------------------------ the results table


@pytest.fixture
def scenario(request: pytest.FixtureRequest) -> Callable[..., ScenarioRecord]:
    """`scenario("3", "Telegram faults", injected="...", checked="...")` → the test's table row."""

    def make(key: str, title: str, *, injected: str = "", checked: str = "") -> ScenarioRecord:
        record = ScenarioRecord(key, title, injected, checked)
        request.node.stash[_RECORD_KEY] = record
        _records.append(record)
        return record

    return make


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    record = item.stash.get(_RECORD_KEY, None)
    if record is not None:
        if report.when == "call":
            record.seconds = report.duration
            record.outcome = "PASS" if report.passed else ("SKIP" if report.skipped else "FAIL")
        elif report.failed:
            record.outcome = "FAIL"  # a setup or teardown failure (e.g. a leak found) fails the row too
    return report


# ------------------------------------------------------------------ the pipeline


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Factory: `make_stack(db_url, sim_config=..., env=..., webhook=True)` → a started Stack, closed
    at teardown (SIGTERM to every process it started, then the simulator)."""
    stacks: list[Stack] = []

    def make(db_url: str, *, sim_config: SimConfig | None = None, env: dict[str, str] | None = None,
             webhook: bool = True) -> Stack:  # fmt: skip
        workdir = tmp_path / f"stack{len(stacks)}"
        workdir.mkdir()
        stack = Stack(db_url, workdir, sim_config=sim_config or SimConfig(enforce_flood_limits=False), env=env,
                      webhook=webhook)  # fmt: skip
        for secret in (stack.main_token, stack.tgms_token, WEBHOOK_SECRET, ADMIN_KEY):
            register_secret(secret)
        stacks.append(stack)  # closed at teardown even if starting it fails half-way
        return stack.__enter__()

    yield make
    for stack in reversed(stacks):
        stack.close()


class ScanResult:
    def __init__(self) -> None:
        self.files = 0
        self.bytes = 0
        self.found: set[str] = set()


def scan_files(paths: Any) -> ScanResult:
    """Scan text files for bot tokens and registered secrets (tests/token_guard.find_leaks)."""
    result = ScanResult()
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError:
            continue
        result.files += 1
        result.bytes += len(data)
        for what in find_leaks(data.decode("utf-8", errors="replace")):
            result.found.add(f"{what} in {Path(path).name}")
    return result


# ------------------------------------------------------------------ end of session


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None or not _records:
        return
    started = time.monotonic()
    try:
        base = Path(factory.getbasetemp())
    except (OSError, ValueError):
        return
    result = scan_files(p for p in base.rglob("*.log") if p.is_file())
    record = ScenarioRecord(
        "5c",
        "Auth: no secret in any subprocess output of the session",
        injected="nothing: the output of every webhook and worker process any test of this session started "
        "through the harness (*.log files under pytest's base temp dir)",
        checked="no bot token (`<id>:<secret>` shapes, `/bot<id>:...` URLs) and none of the registered secrets "
        "(both tokens, webhook secret, admin key of each stack); in-process logs and captured output are "
        "checked per test by tests/token_guard.py",
        numbers={"log files": result.files, "KiB scanned": round(result.bytes / 1024), "leaks": len(result.found)},
        outcome="PASS" if not result.found else "FAIL",
        seconds=time.monotonic() - started,
    )
    _records.append(record)
    if result.found:
        session.config.stash[_SESSION_LEAKS] = sorted(result.found)
        if session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    out = os.environ.get(RESULTS_ENV)
    if out:
        write_json(_records, Path(out))


_SESSION_LEAKS = pytest.StashKey[list[str]]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _records:
        return
    terminalreporter.section("reliability results (docs/reliability.md)")
    terminalreporter.line(render_table(_records))
    leaks = terminalreporter.config.stash.get(_SESSION_LEAKS, [])
    for leak in leaks:
        terminalreporter.line(f"secret in subprocess output: {leak}", red=True)
