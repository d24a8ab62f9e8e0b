"""Checks shared by the demo tests: after a demo, none of its processes, ports or servers remain."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import psutil

from tgms_tui.demo.processes import pid_alive, port_is_listening


def demo_processes_of(demo_dir: Path) -> list[str]:
    """Live processes whose command line names the demo directory (its PostgreSQL, for one)."""
    found = []
    for proc in psutil.process_iter(attrs=["pid", "cmdline", "status"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if str(demo_dir) in cmdline and proc.info.get("status") != psutil.STATUS_ZOMBIE:
            found.append(f"{proc.info['pid']}: {cmdline[:120]}")
    return found


def assert_nothing_left(pids: Iterable[int | None], ports: Iterable[int], demo_dir: Path,
                        wait: float = 5.0) -> None:  # fmt: skip
    """No pid alive, no port listening, no process of the demo directory, within `wait` seconds
    (PID 1 may take a moment to reap an exited server)."""
    live_pids = [p for p in pids if p]
    ports = list(ports)
    deadline = time.monotonic() + wait
    while True:
        alive = [p for p in live_pids if pid_alive(p)]
        listening = [p for p in ports if port_is_listening(p)]
        leftovers = demo_processes_of(demo_dir)
        if not (alive or listening or leftovers):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"left running: pids {alive}, ports {listening}, processes {leftovers}")
        time.sleep(0.2)


@contextlib.contextmanager
def demo_data_dir() -> Iterator[Path]:
    """A data directory for a demo run, outside pytest's tmp_path: as root, PostgreSQL runs as the
    'pgserver' user, and a pytest session starting elsewhere resets /tmp/pytest-of-root to mode 700,
    which would lock the server out of its own data mid-run (tests/conftest.py does the same)."""
    path = Path(tempfile.mkdtemp(prefix="tgms-demo-test-"))
    path.chmod(0o711)  # as root, 'pgserver' must pass through to <path>/demo; TGMS opens no parent for it
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
