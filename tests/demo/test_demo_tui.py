"""`tgms demo` with its TUI, in a real pseudo-terminal: a child that dies is reported on screen, and
Ctrl-C stops every process the demo started (no child, no port, no PostgreSQL left)."""

from __future__ import annotations

import fcntl
import os
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.demo.helpers import assert_nothing_left, demo_data_dir

pytestmark = pytest.mark.slow

ANSI = re.compile(r"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b[()][A-Z0-9]|\x1b[=>]")


class Terminal:
    """A 140x45 pseudo-terminal running a command; collects what it shows (escape codes stripped)."""

    def __init__(self, argv: list[str]) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 45, 140, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "140", "LINES": "45"}
        self.process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                        start_new_session=True, close_fds=True)  # fmt: skip
        os.close(slave)
        self.master = master
        self._raw = bytearray()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self._raw.extend(data)

    @property
    def text(self) -> str:
        with self._lock:
            raw = bytes(self._raw)
        return ANSI.sub("", raw.decode("utf-8", errors="replace"))

    def wait_for(self, needle: str, timeout: float, *, exited: bool = False) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            if self.process.poll() is not None and not exited:
                raise AssertionError(f"exited ({self.process.returncode}) before {needle!r}:\n{self.text[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not shown within {timeout:g}s:\n{self.text[-3000:]}")
            time.sleep(0.2)

    def send(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        os.close(self.master)


def _listening_ports(proc: psutil.Process) -> list[int]:
    try:
        return [c.laddr.port for c in proc.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
    except psutil.Error:
        return []


def test_a_dead_child_is_shown_and_ctrl_c_stops_everything() -> None:
    with demo_data_dir() as data_dir:
        _dead_child_then_ctrl_c(data_dir)


def _dead_child_then_ctrl_c(data_dir: Path) -> None:
    demo_dir = (data_dir / "demo").resolve()
    term = Terminal(
        [sys.executable, "-m", "tgms_tui.commands.cli", "demo", "--groups", "6", "--data-dir", str(data_dir)]
    )
    try:
        term.wait_for("groups registered", timeout=120)
        term.wait_for("TGMS control center", timeout=60)
        term.wait_for("Join requests", timeout=30)

        children = {c.pid: c for c in psutil.Process(term.process.pid).children(recursive=True)}
        by_role = {" ".join(c.cmdline()[3:5]): c for c in children.values() if "tgms_tui.commands.cli" in c.cmdline()}
        assert set(by_role) == {"sim --port", "webhook --port", "worker main", "worker tgms"}, by_role
        ports = [p for c in children.values() for p in _listening_ports(c)]
        assert len(ports) >= 2  # the simulator and the webhook server
        postmaster = int((demo_dir / "pgdata" / "postmaster.pid").read_text().split()[0])

        by_role["worker main"].send_signal(signal.SIGKILL)
        term.wait_for("worker-main (pid", timeout=30)  # the notification naming the dead child

        term.send("\x03")  # Ctrl-C
        assert term.process.wait(90) == 1  # a child died during the run: not a clean exit
        term.wait_for("TGMS demo summary", timeout=10, exited=True)
    finally:
        term.close()
    assert_nothing_left([*children, postmaster], ports, demo_dir)
