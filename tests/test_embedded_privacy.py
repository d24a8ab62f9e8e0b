"""The embedded PostgreSQL is private: other users of the machine can neither connect nor look in.

Its logins are trusted (no password), so what keeps another local user out is that the socket, its
folder and the data directory are closed to them, and that the server listens on no TCP port. These
tests start real servers through `tgms db url` and try to get in as another uid (`nobody`, `daemon`),
so they need root; they check the long TGMS_DATA_DIR case too, where the socket cannot live in the
cluster folder (Unix socket paths are limited to ~107 bytes).
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
import psycopg
import pytest

from tgms_tui.backend.embedded import SOCKET_NAME, ServerAccount, socket_dir_for

ROOT = Path(__file__).resolve().parents[1]

needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="connecting as another uid (nobody) needs root; the suite's CI runs as root",
)


def _user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pytest.skip(f"no '{name}' user on this machine")


def _as(user: str, command: list[str]) -> list[str]:
    """`command` run as `user` with that user's primary group and no other group."""
    entry = _user(user)
    if shutil.which("setpriv"):
        return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups", *command]
    if shutil.which("runuser"):
        return ["runuser", "-u", user, "--", *command]
    pytest.skip("neither setpriv nor runuser is installed")


def _env(data_dir: Path, home: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TGMS_", "DATABASE_URL", "XDG_RUNTIME_DIR"))}
    env["TGMS_DATA_DIR"] = str(data_dir)
    if home is not None:
        env["HOME"] = str(home)
    return env


def _tgms(args: list[str], data_dir: Path, *, user: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tgms_tui.commands.cli", *args]
    return subprocess.run(
        _as(user, command) if user else command,
        cwd=ROOT,
        env=_env(data_dir, home=data_dir if user else None),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _psql(user: str, url: str) -> subprocess.CompletedProcess[str]:
    with warnings.catch_warnings():  # pgserver warns at import when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        from pgserver._commands import POSTGRES_BIN_PATH

    command = [str(POSTGRES_BIN_PATH / "psql"), url, "-Atc", "SELECT current_user"]
    return subprocess.run(_as(user, command), capture_output=True, text=True, timeout=60)


def _long_dir(base: Path) -> Path:
    """A data directory of ~150 characters under `base`: too long for a socket in its cluster."""
    path = base / ("x" * 70) / ("y" * (150 - len(str(base)) - 72))
    assert len(str(path)) == 150
    return path


@contextlib.contextmanager
def _started(data_dir: Path, *, user: str | None = None) -> Iterator[str]:
    """`tgms db url` (as `user`); the server is stopped and its socket folder removed afterwards."""
    done = _tgms(["db", "url"], data_dir, user=user)
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip()
    try:
        yield url
    finally:
        _tgms(["db", "stop"], data_dir, user=user)
        socket_dir = Path(url.rsplit("host=", 1)[1])
        if socket_dir.parent == Path("/tmp"):
            shutil.rmtree(socket_dir, ignore_errors=True)


def _postmaster(data_dir: Path) -> psutil.Process:
    return psutil.Process(int((data_dir / "pgdata" / "postmaster.pid").read_text().split("\n", 1)[0]))


@pytest.fixture
def base() -> Iterator[Path]:
    """A folder in /tmp that others may pass through but not list (0711), as PostgreSQL's user must
    pass through it when TGMS runs as root; not pytest's tmp_path, whose parent is 0700."""
    path = Path(tempfile.mkdtemp(prefix="tgms-priv-", dir="/tmp"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@needs_root
@pytest.mark.parametrize("length", ["short", "long"])
def test_root_started_server_lets_no_other_user_in_and_widens_no_folder(base: Path, length: str) -> None:
    middle = base / "middle"
    middle.mkdir(mode=0o750)  # root's group only: the server user passes (it keeps root's groups)
    data = _long_dir(middle) if length == "long" else middle / "data"
    if length == "short":  # as an earlier version left it
        data.mkdir(mode=0o755)
        (data / "tui.log").write_text("old\n")
        (data / "tui.log").chmod(0o644)
    with _started(data) as url:
        pgdata = data / "pgdata"
        server_user = _user("pgserver")
        account = ServerAccount("pgserver", server_user.pw_uid, server_user.pw_gid, frozenset())
        socket_dir = socket_dir_for(pgdata.resolve(), account)
        assert url.endswith(f"host={socket_dir}")
        if length == "long":
            assert socket_dir.parent == Path("/tmp") and len(str(socket_dir / SOCKET_NAME)) < 100
        else:
            assert socket_dir == pgdata
            assert _mode(data / "tui.log") == 0o600

        # Nothing opened on the way, nothing open inside.
        assert (_mode(Path("/tmp")), _mode(base), _mode(middle)) == (0o1777, 0o711, 0o750)
        assert _mode(data) == 0o710 and os.stat(data).st_gid == os.getegid()
        if length == "long":
            assert _mode(data.parent) == 0o710  # made by TGMS for the data directory
        assert (_mode(pgdata), os.stat(pgdata).st_uid) == (0o700, server_user.pw_uid)
        assert _mode(data / "run") == 0o700 and not (data / "keep-running").stat().st_mode & 0o077
        assert (_mode(socket_dir), os.stat(socket_dir).st_uid) == (0o700, server_user.pw_uid)
        assert _mode(socket_dir / SOCKET_NAME) == 0o700

        # No TCP: neither configured nor a listening socket of the server process.
        with psycopg.connect(url) as conn:
            assert conn.execute("SHOW listen_addresses").fetchone() == ("",)
        postmaster = _postmaster(data)
        assert postmaster.net_connections(kind="inet") == []

        # Another user: refused at the socket, before PostgreSQL ever sees a login.
        intruder = _psql("nobody", url)
        assert intruder.returncode != 0 and "Permission denied" in intruder.stderr, intruder
        assert "postgres" not in intruder.stdout


@needs_root
def test_user_started_server_lets_no_other_user_in(base: Path) -> None:
    _user("daemon")
    owner = _user("nobody")
    os.chown(base, owner.pw_uid, owner.pw_gid)
    data = _long_dir(base)
    with _started(data, user="nobody") as url:
        socket_dir = Path(url.rsplit("host=", 1)[1])
        assert socket_dir.parent == Path("/tmp")
        for folder in (data, data / "pgdata", data / "run", socket_dir):
            assert (_mode(folder), os.stat(folder).st_uid) == (0o700, owner.pw_uid), folder
        assert _mode(data / "keep-running") == 0o600
        assert _psql("nobody", url).stdout.strip() == "postgres"  # its owner gets in
        intruder = _psql("daemon", url)
        assert intruder.returncode != 0 and "Permission denied" in intruder.stderr, intruder


@needs_root
def test_a_parent_closed_to_the_server_user_is_refused_not_opened(base: Path) -> None:
    base.chmod(0o700)
    done = _tgms(["db", "url"], base / "data")
    assert done.returncode == 2
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("tgms: configuration error: TGMS_DATA_DIR: embedded PostgreSQL refused:"), line
    assert f"cannot enter {base} (mode 0700)" in line and "/var/lib/tgms" in line
    assert _mode(base) == 0o700
    assert not (base / "data" / "pgdata" / "PG_VERSION").exists()


@needs_root
def test_a_socket_folder_planted_by_another_user_is_refused(base: Path) -> None:
    from pgserver.utils import ensure_user_exists

    data = _long_dir(base)
    server_user = ensure_user_exists("pgserver")  # what TGMS does first as root
    assert server_user is not None
    account = ServerAccount("pgserver", server_user.pw_uid, server_user.pw_gid, frozenset())
    planted = socket_dir_for((data / "pgdata").resolve(), account)
    planted.mkdir(mode=0o700)
    nobody = _user("nobody")
    os.chown(planted, nobody.pw_uid, nobody.pw_gid)
    try:
        done = _tgms(["db", "url"], data)
        assert done.returncode == 2, done
        line = done.stderr.strip().splitlines()[-1]
        assert f"the socket folder {planted} belongs to uid {nobody.pw_uid}" in line, line
        assert not (data / "pgdata" / "postmaster.pid").exists()
    finally:
        _tgms(["db", "stop"], data)
        shutil.rmtree(planted, ignore_errors=True)


@pytest.mark.parametrize("mode", [0o1777, 0o755])
def test_a_folder_that_is_not_tgmss_is_refused_never_chmodded(base: Path, mode: int) -> None:
    folder = base / "shared"
    folder.mkdir()
    (folder / "notes.txt").write_text("not TGMS's\n")
    folder.chmod(mode)  # /tmp-like, or a home folder given as TGMS_DATA_DIR
    done = _tgms(["db", "url"], folder)
    assert done.returncode == 2, done
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("tgms: configuration error: TGMS_DATA_DIR: embedded PostgreSQL refused:"), line
    assert ("shared folder" if mode & 0o1000 else "holds files that are not TGMS's") in line
    assert _mode(folder) == mode and sorted(os.listdir(folder)) == ["notes.txt"]
