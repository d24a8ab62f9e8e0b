"""Starting the embedded PostgreSQL through `tgms db url` and trying to get in as another uid.

Shared by tests/test_embedded_privacy.py and the reliability suite's privacy scenario. Getting in as
another user (`setpriv`/`runuser`) needs root: `needs_root` skips a test otherwise.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]

needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="connecting as another uid (nobody) needs root; the suite's CI runs as root",
)


def system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pytest.skip(f"no '{name}' user on this machine")


def as_user(user: str, command: list[str]) -> list[str]:
    """`command` run as `user` with that user's primary group and no other group."""
    entry = system_user(user)
    if shutil.which("setpriv"):
        return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups", *command]
    if shutil.which("runuser"):
        return ["runuser", "-u", user, "--", *command]
    pytest.skip("neither setpriv nor runuser is installed")


def cli_env(data_dir: Path, home: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TGMS_", "DATABASE_URL", "XDG_RUNTIME_DIR"))}
    env["TGMS_DATA_DIR"] = str(data_dir)
    if home is not None:
        env["HOME"] = str(home)
    return env


def tgms(args: list[str], data_dir: Path, *, user: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tgms_tui.commands.cli", *args]
    return subprocess.run(
        as_user(user, command) if user else command,
        cwd=ROOT,
        env=cli_env(data_dir, home=data_dir if user else None),
        capture_output=True,
        text=True,
        timeout=120,
    )


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def psql(user: str, url: str) -> subprocess.CompletedProcess[str]:
    with warnings.catch_warnings():  # pgserver warns at import when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        from pgserver._commands import POSTGRES_BIN_PATH

    command = [str(POSTGRES_BIN_PATH / "psql"), url, "-Atc", "SELECT current_user"]
    return subprocess.run(as_user(user, command), capture_output=True, text=True, timeout=60)


def long_dir(base: Path) -> Path:
    """A data directory of ~150 characters under `base`: too long for a socket in its cluster."""
    path = base / ("x" * 70) / ("y" * (150 - len(str(base)) - 72))
    assert len(str(path)) == 150
    return path


@contextlib.contextmanager
def started(data_dir: Path, *, user: str | None = None) -> Iterator[str]:
    """`tgms db url` (as `user`); the server is stopped and its socket folder removed afterwards."""
    done = tgms(["db", "url"], data_dir, user=user)
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip()
    try:
        yield url
    finally:
        tgms(["db", "stop"], data_dir, user=user)
        socket_dir = Path(url.rsplit("host=", 1)[1])
        if socket_dir.parent == Path("/tmp"):
            shutil.rmtree(socket_dir, ignore_errors=True)


def postmaster_of(data_dir: Path) -> psutil.Process:
    return psutil.Process(int((data_dir / "pgdata" / "postmaster.pid").read_text().split("\n", 1)[0]))


@contextlib.contextmanager
def private_base() -> Iterator[Path]:
    """A folder in /tmp that others may pass through but not list (0711), as PostgreSQL's user must
    pass through it when TGMS runs as root; not pytest's tmp_path, whose parent is 0700."""
    path = Path(tempfile.mkdtemp(prefix="tgms-priv-", dir="/tmp"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
