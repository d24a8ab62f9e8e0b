"""The embedded PostgreSQL is private: other users of the machine can neither connect nor look in.

Its logins are trusted (no password), so what keeps another local user out is that the socket, its
folder and the data directory are closed to them, and that the server listens on no TCP port. These
tests start real servers through `tgms db url` and try to get in as another uid (`nobody`, `daemon`),
so they need root; they check the long TGMS_DATA_DIR case too, where the socket cannot live in the
cluster folder (Unix socket paths are limited to ~107 bytes).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.private_pg import (
    long_dir,
    mode_of,
    needs_root,
    postmaster_of,
    private_base,
    psql,
    started,
    system_user,
    tgms,
)
from tgms_tui.backend.embedded import SOCKET_NAME, ServerAccount, socket_dir_for


@pytest.fixture
def base() -> Iterator[Path]:
    with private_base() as path:
        yield path


@needs_root
@pytest.mark.parametrize("length", ["short", "long"])
def test_root_started_server_lets_no_other_user_in_and_widens_no_folder(base: Path, length: str) -> None:
    middle = base / "middle"
    middle.mkdir(mode=0o750)  # root's group only: the server user passes (it keeps root's groups)
    data = long_dir(middle) if length == "long" else middle / "data"
    if length == "short":  # as an earlier version left it
        data.mkdir(mode=0o755)
        (data / "tui.log").write_text("old\n")
        (data / "tui.log").chmod(0o644)
    with started(data) as url:
        pgdata = data / "pgdata"
        server_user = system_user("pgserver")
        account = ServerAccount("pgserver", server_user.pw_uid, server_user.pw_gid, frozenset())
        socket_dir = socket_dir_for(pgdata.resolve(), account)
        assert url.endswith(f"host={socket_dir}")
        if length == "long":
            assert socket_dir.parent == Path("/tmp") and len(str(socket_dir / SOCKET_NAME)) < 100
        else:
            assert socket_dir == pgdata
            assert mode_of(data / "tui.log") == 0o600

        # Nothing opened on the way, nothing open inside.
        assert (mode_of(Path("/tmp")), mode_of(base), mode_of(middle)) == (0o1777, 0o711, 0o750)
        assert mode_of(data) == 0o710 and os.stat(data).st_gid == os.getegid()
        if length == "long":
            assert mode_of(data.parent) == 0o710  # made by TGMS for the data directory
        assert (mode_of(pgdata), os.stat(pgdata).st_uid) == (0o700, server_user.pw_uid)
        assert mode_of(data / "run") == 0o700 and not (data / "keep-running").stat().st_mode & 0o077
        assert (mode_of(socket_dir), os.stat(socket_dir).st_uid) == (0o700, server_user.pw_uid)
        assert mode_of(socket_dir / SOCKET_NAME) == 0o700

        # No TCP: neither configured nor a listening socket of the server process.
        with psycopg.connect(url) as conn:
            assert conn.execute("SHOW listen_addresses").fetchone() == ("",)
        postmaster = postmaster_of(data)
        assert postmaster.net_connections(kind="inet") == []

        # Another user: refused at the socket, before PostgreSQL ever sees a login.
        intruder = psql("nobody", url)
        assert intruder.returncode != 0 and "Permission denied" in intruder.stderr, intruder
        assert "postgres" not in intruder.stdout


@needs_root
def test_user_started_server_lets_no_other_user_in(base: Path) -> None:
    system_user("daemon")
    owner = system_user("nobody")
    os.chown(base, owner.pw_uid, owner.pw_gid)
    data = long_dir(base)
    with started(data, user="nobody") as url:
        socket_dir = Path(url.rsplit("host=", 1)[1])
        assert socket_dir.parent == Path("/tmp")
        for folder in (data, data / "pgdata", data / "run", socket_dir):
            assert (mode_of(folder), os.stat(folder).st_uid) == (0o700, owner.pw_uid), folder
        assert mode_of(data / "keep-running") == 0o600
        assert psql("nobody", url).stdout.strip() == "postgres"  # its owner gets in
        intruder = psql("daemon", url)
        assert intruder.returncode != 0 and "Permission denied" in intruder.stderr, intruder


@needs_root
def test_a_parent_closed_to_the_server_user_is_refused_not_opened(base: Path) -> None:
    base.chmod(0o700)
    done = tgms(["db", "url"], base / "data")
    assert done.returncode == 2
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("tgms: configuration error: TGMS_DATA_DIR: embedded PostgreSQL refused:"), line
    assert f"cannot enter {base} (mode 0700)" in line and "/var/lib/tgms" in line
    assert mode_of(base) == 0o700
    assert not (base / "data" / "pgdata" / "PG_VERSION").exists()


@needs_root
def test_a_socket_folder_planted_by_another_user_is_refused(base: Path) -> None:
    from pgserver.utils import ensure_user_exists

    data = long_dir(base)
    server_user = ensure_user_exists("pgserver")  # what TGMS does first as root
    assert server_user is not None
    account = ServerAccount("pgserver", server_user.pw_uid, server_user.pw_gid, frozenset())
    planted = socket_dir_for((data / "pgdata").resolve(), account)
    planted.mkdir(mode=0o700)
    nobody = system_user("nobody")
    os.chown(planted, nobody.pw_uid, nobody.pw_gid)
    try:
        done = tgms(["db", "url"], data)
        assert done.returncode == 2, done
        line = done.stderr.strip().splitlines()[-1]
        assert f"the socket folder {planted} belongs to uid {nobody.pw_uid}" in line, line
        assert not (data / "pgdata" / "postmaster.pid").exists()
    finally:
        tgms(["db", "stop"], data)
        shutil.rmtree(planted, ignore_errors=True)


@pytest.mark.parametrize("mode", [0o1777, 0o755])
def test_a_folder_that_is_not_tgmss_is_refused_never_chmodded(base: Path, mode: int) -> None:
    folder = base / "shared"
    folder.mkdir()
    (folder / "notes.txt").write_text("not TGMS's\n")
    folder.chmod(mode)  # /tmp-like, or a home folder given as TGMS_DATA_DIR
    done = tgms(["db", "url"], folder)
    assert done.returncode == 2, done
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("tgms: configuration error: TGMS_DATA_DIR: embedded PostgreSQL refused:"), line
    assert ("shared folder" if mode & 0o1000 else "holds files that are not TGMS's") in line
    assert mode_of(folder) == mode and sorted(os.listdir(folder)) == ["notes.txt"]
