"""The suite-wide token guard (tests/token_guard.py) catches leaks and stays quiet otherwise.

Each case runs a tiny pytest session in a subprocess with the plugin loaded; its output is piped
here (not captured by this test), so the planted token never reaches our own captured output.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.token_guard import find_leaks

REPO = Path(__file__).resolve().parents[2]
# Assembled at run time so that this file's text is not itself token-shaped on one line.
FAKE_TOKEN = "7654321" + ":" + "AAH" + "x" * 32


def run_inner(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    test_file = tmp_path / "test_inner.py"
    test_file.write_text(body)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rf",
            "-p",
            "tests.token_guard",
            "-p",
            "no:cacheprovider",
            str(test_file),
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "FAKE_TOKEN": FAKE_TOKEN},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_find_leaks_recognises_tokens_and_secrets() -> None:
    assert find_leaks(f"POST http://h/bot{FAKE_TOKEN}/sendMessage") != []
    assert find_leaks("GET http://h/bot12345:short/getMe") == ["bot token of bot 12345 in a URL"]
    assert find_leaks(f"token={FAKE_TOKEN}") == ["bot token of bot 7654321"]
    assert find_leaks("the key is hunter2-hunter2", secrets=["hunter2-hunter2"]) != []
    assert find_leaks("at 12:30:00, bot 7654321:*** redacted, http://h/bot7654321:***/getMe") == []


INNER_SESSION = """
import logging, os, subprocess, sys
import pytest

TOKEN = os.environ["FAKE_TOKEN"]

def test_log_leak():
    logging.getLogger("somewhere").debug("calling %s", "http://x/bot" + TOKEN + "/getMe")

def test_stdout_leak():
    print("token:", TOKEN)

def test_subprocess_leak():
    subprocess.run([sys.executable, "-c", "import os, sys; print(os.environ['FAKE_TOKEN'], file=sys.stderr)"])

def test_clean():
    logging.getLogger("x").info("sent to chat -100123 via bot 7654321:***")
    print("nothing secret here")

@pytest.mark.token_guard_allow
def test_marked_may_print():
    print("your token:", TOKEN)
"""


def test_leaks_fail_their_test_without_printing_the_token(tmp_path: Path) -> None:
    result = run_inner(tmp_path, INNER_SESSION)
    output = result.stdout + result.stderr
    assert result.returncode == 1
    failed = {line.split("::")[1].split()[0] for line in output.splitlines() if line.startswith("FAILED")}
    assert failed == {"test_log_leak", "test_stdout_leak", "test_subprocess_leak"}, output[-3000:]
    assert "3 failed, 2 passed" in output
    assert "bot token of bot 7654321" in output
    assert FAKE_TOKEN.split(":")[1] not in output
