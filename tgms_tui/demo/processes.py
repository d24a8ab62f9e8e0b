"""The child processes of `tgms demo`: started, watched, and all stopped when the demo ends.

Each child is a real `tgms` subcommand (`python -m tgms_tui.commands.cli sim|webhook|worker ...`) with its
output in a log file. Children run in their own session, so a Ctrl-C typed at a headless demo reaches
the demo only and it stops them in order (webhook first, so nothing new arrives, then the workers,
which finish their jobs); on Linux they also get SIGTERM from the kernel if the demo itself dies
without cleaning up (PR_SET_PDEATHSIG), so a killed demo leaves no server behind.

A child that exits while the demo is not stopping is reported once through `on_exit` (the TUI shows a
notification, headless mode writes to stderr).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

# Loaded before any fork: the pre-exec hook must not load a library in the child (dlopen takes
# locks another thread of the parent may hold at the moment of the fork).
_LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if sys.platform.startswith("linux") else None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the child binds it a moment later; `start_http`
    retries with another port if someone took it in between)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def pid_alive(pid: int) -> bool:
    """True while a process with this pid exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class ChildFailed(RuntimeError):
    """A child could not be started (it exited or never became ready); the message says which."""


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes]
    port: int | None = None
    reported: bool = False
    stopping: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 3) -> str:
        """The last lines of the child's log, for an error message (children redact their secrets)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        tail = [line.strip() for line in text.strip().splitlines()[-lines:] if line.strip()]
        return " | ".join(tail)[-300:]


ExitCallback = Callable[[Child, int], None]


@dataclass
class Supervisor:
    """Starts children, reports the ones that die, and stops them all."""

    log_dir: Path
    env: Mapping[str, str]
    cwd: Path
    on_exit: ExitCallback | None = None
    children: list[Child] = field(default_factory=list)
    _stopping: bool = False
    _watcher: threading.Thread | None = None
    _wake: threading.Event = field(default_factory=threading.Event)

    # ------------------------------------------------------------------ starting
    def start(
        self, name: str, args: Sequence[str], *, env: Mapping[str, str] | None = None, port: int | None = None
    ) -> Child:
        """Run `python -m tgms_tui.commands.cli <args>` with the demo's environment (plus `env`)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        argv = [sys.executable, "-m", "tgms_tui.commands.cli", *args]
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env={**self.env, **(env or {})},
                start_new_session=True,
                preexec_fn=_die_with_parent,  # only a prctl call; libc is preloaded
            )
        child = Child(name, argv, log_path, process, port=port)
        self.children.append(child)
        self._ensure_watcher()
        return child

    def start_http(
        self,
        name: str,
        args_for_port: Callable[[int], Sequence[str]],
        ready_path: str,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        attempts: int = 3,
    ) -> Child:
        """Start an HTTP server child on a free port and wait until `ready_path` answers 200.

        If the child exits before it is ready (typically: the port was taken between our check and
        its bind), it is started again on another port."""
        last_error = ""
        for _ in range(attempts):
            port = free_port()
            child = self.start(name, args_for_port(port), env=env, port=port)
            child.stopping = True  # a failed start is reported by ChildFailed, not as a death
            try:
                wait_http_ready(f"http://127.0.0.1:{port}{ready_path}", child, timeout=timeout)
            except ChildFailed as exc:
                last_error = str(exc)
                self._discard(child)
                continue
            child.stopping = False
            return child
        raise ChildFailed(last_error)

    def _discard(self, child: Child) -> None:
        terminate([child], grace=2.0)
        with contextlib.suppress(ValueError):
            self.children.remove(child)

    # ------------------------------------------------------------------ watching
    def _ensure_watcher(self) -> None:
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="demo-supervisor", daemon=True)
            self._watcher.start()

    def _watch(self) -> None:
        while not self._stopping:
            for child in list(self.children):
                code = child.process.poll()
                if code is not None and not child.stopping and not child.reported and not self._stopping:
                    child.reported = True
                    if self.on_exit is not None:
                        with contextlib.suppress(Exception):  # a reporting failure must not stop watching
                            self.on_exit(child, code)
            self._wake.wait(0.5)

    def dead(self) -> list[Child]:
        """Children that exited on their own (not stopped by us)."""
        return [c for c in self.children if c.process.poll() is not None and not c.stopping]

    # ------------------------------------------------------------------ stopping
    def stop(self, names: Iterable[str], *, grace: float = 10.0) -> None:
        """SIGTERM the named children together, wait up to `grace` seconds, then SIGKILL."""
        wanted = set(names)
        chosen = [c for c in self.children if c.name in wanted]
        for child in chosen:
            child.stopping = True
        terminate(chosen, grace=grace)

    def stop_all(self, *, grace: float = 10.0) -> None:
        self._stopping = True
        for child in self.children:
            child.stopping = True
        terminate(self.children, grace=grace)
        self._wake.set()
        if self._watcher is not None:
            self._watcher.join(2.0)

    def exit_codes(self) -> dict[str, int | None]:
        return {c.name: c.process.poll() for c in self.children}


def terminate(children: Sequence[Child], *, grace: float) -> None:
    """SIGTERM, wait for all up to `grace` seconds, SIGKILL the rest, and reap them."""
    for child in children:
        if child.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                child.process.kill()
            child.process.wait(5.0)


def wait_http_ready(url: str, child: Child, *, timeout: float) -> None:
    """Poll `url` until it answers 200; ChildFailed if the child exits or time runs out."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1.0, trust_env=False) as client:
        while True:
            code = child.process.poll()
            if code is not None:
                raise ChildFailed(f"{child.name} exited with code {code}: {child.log_tail()}")
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise ChildFailed(f"{child.name} did not become ready within {timeout:g}s: {child.log_tail()}")
            time.sleep(0.1)
