"""pytest plugin: no bot token or secret may appear in any captured output of the test suite.

Register it in tests/conftest.py with `pytest_plugins = ["tests.token_guard"]`.

Three nets, the first two checked after every test phase (setup, call, teardown):
1. A handler on the root logger that sees every log record of the test process at DEBUG, whatever
   level the tests capture at (records from server threads too).
2. The report sections pytest captured for the phase: "Captured log", "Captured stdout/stderr"
   (which also hold the output of subprocesses the test started with inherited streams).
3. After the test's teardown, every `*.log` file under its `tmp_path`: where harnesses write the
   output of the processes they start (tests/workers/harness.py: webhook and worker processes),
   which pytest never captures.

A phase whose output contains a Telegram-shaped token (`<id>:<secret>`, with or without the `bot`
prefix of API URLs) or a registered secret fails, naming where the leak was, never the secret.
Leaks outside any test (collection, session fixtures' teardown) fail the session at the end.

Secrets checked: every token-shaped string, the values of BOT_TOKEN, TGMS_BOT_TOKEN, ADMIN_API_KEY
and TGMS_WEBHOOK_SECRET at startup, secrets registered in `tgms_tui.backend.redaction` by code under
test (clients register their tokens), and any passed to `register_secret()`. Registered secrets
shorter than 8 characters are ignored (too likely to match ordinary words).

A test that must print a token on purpose (e.g. `tgms sim` printing the token it made) can be marked
`@pytest.mark.token_guard_allow`; its captured sections are then not scanned (log records still are).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

# Same shape as tgms_tui.backend.redaction.TOKEN_PATTERN, plus the URL form with a secret of any
# length (simulator tokens may be short).
_BARE_TOKEN_RE = re.compile(r"(?<![A-Za-z0-9])(?:bot)?(\d{3,20}):[A-Za-z0-9_-]{20,}")
_URL_TOKEN_RE = re.compile(r"/bot(\d+):[A-Za-z0-9_-]+")
_MIN_SECRET_LEN = 8
_ENV_SECRETS = ("BOT_TOKEN", "TGMS_BOT_TOKEN", "ADMIN_API_KEY", "TGMS_WEBHOOK_SECRET")

_secrets: set[str] = set()


def register_secret(secret: str) -> None:
    """Treat `secret` as a leak wherever it shows up from now on."""
    if secret and len(secret) >= _MIN_SECRET_LEN:
        _secrets.add(secret)


def _known_secrets() -> set[str]:
    found = set(_secrets)
    try:
        from tgms_tui.backend import redaction

        found.update(s for s in getattr(redaction, "_extra_secrets", ()) if len(s) >= _MIN_SECRET_LEN)
    except ImportError:
        pass
    return found


def find_leaks(text: str, secrets: Iterable[str] | None = None) -> list[str]:
    """Descriptions (without the secret) of every token or secret in `text`."""
    if not text:
        return []
    leaks = [f"bot token of bot {m.group(1)}" for m in _BARE_TOKEN_RE.finditer(text)]
    leaks += [f"bot token of bot {m.group(1)} in a URL" for m in _URL_TOKEN_RE.finditer(text)]
    for secret in _known_secrets() if secrets is None else secrets:
        if secret in text:
            leaks.append(f"registered secret ({len(secret)} chars)")
    return sorted(set(leaks))


def scrub(text: str) -> str:
    """`text` with every token and known secret masked (for reprinting captured output)."""
    text = _URL_TOKEN_RE.sub(lambda m: f"/bot{m.group(1)}:***", text)
    text = _BARE_TOKEN_RE.sub(lambda m: f"{m.group(1)}:***", text)
    for secret in _known_secrets():
        text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class Leak:
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.what} in {self.where}"


class _LeakCollector(logging.Handler):
    """Formats every record (message and traceback) and remembers those that carry a secret."""

    def __init__(self) -> None:
        super().__init__(level=logging.NOTSET)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self._lock_leaks = threading.Lock()
        self._leaks: list[Leak] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:
            text = f"{record.msg} {record.args}"
        for what in find_leaks(text):
            with self._lock_leaks:
                self._leaks.append(Leak(f"log record of {record.name!r} ({record.levelname})", what))

    def take(self) -> list[Leak]:
        with self._lock_leaks:
            leaks, self._leaks = self._leaks, []
        return leaks


_collector = _LeakCollector()
_session_leaks: list[Leak] = []
_original_root_level: int | None = None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "token_guard_level",
        "level the token guard lowers the root logger to, so every record is checked (default DEBUG)",
        default="DEBUG",
    )


def pytest_configure(config: pytest.Config) -> None:
    global _original_root_level
    config.addinivalue_line("markers", "token_guard_allow: do not scan this test's captured sections")
    for var in _ENV_SECRETS:
        value = os.environ.get(var)
        if value:
            register_secret(value)
    root = logging.getLogger()
    if _collector not in root.handlers:
        root.addHandler(_collector)
    _original_root_level = root.level
    level = logging.getLevelName(str(config.getini("token_guard_level")).upper())
    if isinstance(level, int):
        root.setLevel(min(root.level or logging.WARNING, level))


def pytest_unconfigure(config: pytest.Config) -> None:
    root = logging.getLogger()
    if _collector in root.handlers:
        root.removeHandler(_collector)
    if _original_root_level is not None:
        root.setLevel(_original_root_level)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    leaks = _collector.take()
    if item.get_closest_marker("token_guard_allow") is None:
        clean_sections = []
        for title, content in report.sections:
            found = find_leaks(content)
            # A report carries the sections of earlier phases too; count each where it was made.
            if title.endswith(f" {call.when}"):
                leaks.extend(Leak(f"'{title}'", what) for what in found)
            # Masked, so that the failure report does not print the secret a second time.
            clean_sections.append((title, scrub(content) if found else content))
        report.sections = clean_sections
        if call.when == "teardown":
            for path in subprocess_logs(item):
                found = find_leaks(path.read_text(encoding="utf-8", errors="replace"))
                leaks.extend(Leak(f"subprocess output {path.name}", what) for what in found)
    if report.failed and report.longrepr is not None:
        # An assertion message may quote a token; the test failed anyway, just do not print it.
        text = str(report.longrepr)
        if find_leaks(text):
            report.longrepr = scrub(text)
    if leaks:
        unique = sorted({str(leak) for leak in leaks})
        message = f"token guard: secret(s) in captured output during {call.when}:\n  " + "\n  ".join(unique)
        if report.outcome == "failed" and report.longrepr is not None:
            report.sections.append(("token guard", message))
        else:
            report.outcome = "failed"
            report.longrepr = message
    return report


def subprocess_logs(item: pytest.Item) -> list[Path]:
    """The `*.log` files under the test's tmp_path (if it used one), e.g. the harness's process logs."""
    tmp = getattr(item, "funcargs", {}).get("tmp_path")
    if not isinstance(tmp, Path) or not tmp.is_dir():
        return []
    return sorted(p for p in tmp.rglob("*.log") if p.is_file())


def pytest_collectreport(report: pytest.CollectReport) -> None:
    _session_leaks.extend(_collector.take())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _session_leaks.extend(_collector.take())
    if _session_leaks and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _session_leaks:
        terminalreporter.section("token guard", red=True)
        for leak in sorted({str(leak) for leak in _session_leaks}):
            terminalreporter.line(f"secret outside any test: {leak}", red=True)
