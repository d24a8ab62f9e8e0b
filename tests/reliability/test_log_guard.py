"""Scenario 5c's net, tested: tests/token_guard.py fails a test whose subprocesses wrote a secret into a
`*.log` under its tmp_path (where tests/workers/harness.py puts webhook and worker output), without
printing the secret, and stays quiet for clean logs. Same method as tests/client/test_token_guard.py:
a tiny pytest session in a subprocess, so the planted token never reaches this test's own output."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.client.test_token_guard import FAKE_TOKEN, run_inner

from .results import ScenarioFactory

WRITES_LOG = """
import os
def test_worker_output(tmp_path):
    (tmp_path / "stack0").mkdir()
    line = {line}
    (tmp_path / "stack0" / "02-worker-tgms.log").write_text("2026 INFO workers.runner: " + line + "\\n")
"""


@pytest.mark.slow
def test_a_token_in_a_subprocess_log_fails_the_test(tmp_path: Path, scenario: ScenarioFactory) -> None:
    scenario(
        "5d",
        "Auth: the subprocess-output net works",
        injected="a test (in an inner pytest session) whose 'worker' writes a bot token into its log file",
        checked="tests/token_guard.py fails that test, names the file, never prints the token; a clean log passes",
    )
    result = run_inner(tmp_path, WRITES_LOG.format(line='"POST http://h/bot" + os.environ["FAKE_TOKEN"] + "/getMe"'))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "subprocess output 02-worker-tgms.log" in output and "bot token of bot 7654321" in output
    assert FAKE_TOKEN.split(":")[1] not in output


@pytest.mark.slow
def test_a_clean_subprocess_log_passes(tmp_path: Path) -> None:
    result = run_inner(tmp_path, WRITES_LOG.format(line='"POST http://h/bot7654321:***/getMe -> ok"'))
    assert result.returncode == 0, result.stdout + result.stderr
