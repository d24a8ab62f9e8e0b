"""The embedded PostgreSQL used when DATABASE_URL is unset.

pgserver ships PostgreSQL binaries in a wheel and lets several processes share one server in one
data directory: the first `tgms` process starts it, later ones join it, and (by default) the last one
to exit stops it. That is what lets `tgms tui`, `tgms webhook` and `tgms worker` on one machine share
one database with nothing installed by hand.

The server trusts whoever reaches its socket (initdb --auth-local=trust), so the socket is the security
boundary and TGMS, not pgserver, decides where it lives and who can reach it:
- no TCP at all (`listen_addresses` empty), and TCP logins are rejected should it ever be turned on;
- the socket sits in the cluster folder, or, when that path is too long for a Unix socket, in a
  folder `/tmp/tgms-<uid>-<hash>` that TGMS creates 0700; the socket file itself is 0700 too;
- the data directory is 0700 (what TGMS writes there is 0600), and TGMS never opens a parent folder.
A server whose socket folder other users can reach, or that listens on TCP, is refused, not joined.

PostgreSQL will not run as root, so under root pgserver runs it as a system user `pgserver` (created
if missing), which keeps root's groups. That user must reach the cluster: the data directory is made
0710 for root's group (enter, not list) and TGMS refuses to start when a parent folder is closed to it,
rather than open it (pgserver itself would open every parent folder to everyone); this is why root's
default data directory is /var/lib/tgms and not a folder under /root.

Who stops the server: pgserver lists the pids of the processes using it (`pgdata/.handle_pids.json`)
and the process that removes the last one, at exit, stops it. A process that joins makes SIGTERM and
SIGHUP unwind it (backend/entrypoint.py: by default they skip exit hooks, leaving the pid listed for
good), and pids of processes that died anyway (SIGKILL, a crash) are dropped from the list when a
process joins or leaves, so the last live process still stops the server.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shlex
import stat
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .config import ConfigError
from .entrypoint import exit_on_termination

log = logging.getLogger(__name__)

CleanupMode = Literal["stop", "delete"] | None

# pgserver's system user for PostgreSQL when TGMS runs as root (PostgreSQL will not run as root).
SERVER_USER = "pgserver"
SOCKET_NAME = ".s.PGSQL.5432"
# sun_path holds 108 bytes on Linux and 104 on macOS, the terminating NUL included.
MAX_SOCKET_PATH = 103
SOCKET_PARENT = Path("/tmp")

# What TGMS keeps in a data directory (`tgms demo` adds logs/ to its own): one holding nothing else is
# TGMS's to make private.
_OUR_NAMES = {"pgdata", "run", "keep-running", "tui.log", "demo", "logs"}

_servers: dict[Path, Any] = {}


@dataclass(frozen=True)
class ServerAccount:
    """The system account PostgreSQL runs as: this process's user, or `pgserver` under root."""

    name: str | None
    uid: int
    gid: int
    groups: frozenset[int]

    @property
    def separate(self) -> bool:
        """True when PostgreSQL runs as another user than this process (TGMS runs as root)."""
        return self.name is not None


def _refuse(problem: str) -> ConfigError:
    return ConfigError("TGMS_DATA_DIR", f"embedded PostgreSQL refused: {problem}")


def embedded_url(data_dir: Path, *, cleanup: CleanupMode = "stop") -> str:
    """Start or join the embedded server in `data_dir/pgdata` and return its URL.

    cleanup="stop" stops the server when the last process using it exits; None leaves it running
    and pins it (`tgms db url`: the user wants to connect to the printed URL), so that later processes
    do not stop it either until `tgms db stop`; "delete" also removes the data (tests).
    Raises ConfigError (one line, naming TGMS_DATA_DIR) when the server could not be kept private.
    """
    data_dir = data_dir.expanduser().resolve()
    pgdata = data_dir / "pgdata"
    pin = _pin_file(data_dir)
    server = _servers.get(pgdata)
    if server is None:
        _secure_data_dir(data_dir, _make_dirs(data_dir), separate=os.geteuid() == 0)
        _import_pgserver(data_dir)
        account = _server_account()
        if account.separate:
            from pgserver._commands import POSTGRES_BIN_PATH

            _require_reachable(data_dir, account, "the data directory")
            _require_reachable(POSTGRES_BIN_PATH, account, "the PostgreSQL programs")
    if cleanup is None:
        pin.touch(mode=0o600)
    elif cleanup == "stop" and pin.exists():
        cleanup = None
    if server is None:
        log.info("starting or joining embedded PostgreSQL in %s", pgdata)
        exit_on_termination()  # this process must leave the server's list however it is stopped
        server = _start_or_join(pgdata, account, cleanup)
        _servers[pgdata] = server
    return str(server.get_uri())


def _pin_file(data_dir: Path) -> Path:
    return data_dir.expanduser().resolve() / "keep-running"


def stop_embedded(data_dir: Path) -> bool:
    """Stop the embedded server in `data_dir` if it is running (and unpin it); True when one was stopped."""
    _pin_file(data_dir).unlink(missing_ok=True)
    pgdata = (data_dir / "pgdata").resolve()
    if not (pgdata / "postmaster.pid").exists():
        return False
    _import_pgserver(data_dir.expanduser().resolve())
    from pgserver import _commands

    # As root, pgserver runs PostgreSQL as its own 'pgserver' user; pg_ctl must run as that user too.
    user = SERVER_USER if os.geteuid() == 0 else None
    try:
        _commands.pg_ctl(["-m", "fast", "-w", "stop"], pgdata=pgdata, user=user)  # type: ignore[attr-defined]
    except subprocess.CalledProcessError:
        return False
    return True


def _import_pgserver(data_dir: Path) -> None:
    """pgserver fixes its lock file's folder at import, from XDG_RUNTIME_DIR: by default a 0700 `run`
    folder in the data directory (platformdirs rejects any other mode)."""
    run = data_dir / "run"
    _make_dirs(run)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(run))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver  # noqa: F401


def _forget_dead_processes(handles: Any) -> None:
    """Drop the pids of processes that are gone from pgserver's list of the server's users (call it
    under pgserver's lock): a process killed without running its exit hook would otherwise stay
    listed, and no later process would ever be the last one to leave and stop the server."""
    import psutil

    pids = handles.get()
    alive = [pid for pid in pids if pid == os.getpid() or psutil.pid_exists(pid)]
    if alive != pids:
        log.info(
            "embedded PostgreSQL: forgetting processes that died without leaving: %s", sorted(set(pids) - set(alive))
        )
        handles.put(alive)


def socket_dir_for(pgdata: Path, account: ServerAccount) -> Path:
    """Where the server's socket goes: the cluster folder, or a short private folder in /tmp when the
    cluster's path is too long for a Unix socket (a long TGMS_DATA_DIR)."""
    if len(os.fsencode(pgdata / SOCKET_NAME)) <= MAX_SOCKET_PATH:
        return pgdata
    digest = hashlib.sha256(os.fsencode(pgdata)).hexdigest()[:12]
    return SOCKET_PARENT / f"tgms-{account.uid}-{digest}"


def _server_account() -> ServerAccount:

    if os.geteuid() != 0:
        return ServerAccount(None, os.geteuid(), os.getegid(), frozenset(os.getgroups()))
    from pgserver.utils import ensure_user_exists

    entry = ensure_user_exists(SERVER_USER)
    assert entry is not None
    # pgserver switches only the user id (subprocess user=): PostgreSQL keeps this process's groups.
    return ServerAccount(SERVER_USER, entry.pw_uid, entry.pw_gid, frozenset({os.getegid(), *os.getgroups()}))


def _make_dirs(path: Path) -> list[Path]:
    """Create `path` and its missing parents 0700 (never touching those that exist); return the new ones."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    created = []
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it first
            folder.mkdir(mode=0o700)
            created.append(folder)
    return created


def _secure_data_dir(data_dir: Path, created: list[Path], *, separate: bool) -> None:
    """Make the data directory private: 0700, or 0710 when PostgreSQL runs as a separate user.

    Only TGMS's own folders are changed: those just created, and a data directory holding a cluster or
    nothing but TGMS's files (an earlier version made it 0755). Any other folder with the wrong mode
    (`/`, `/tmp`, a home folder given as TGMS_DATA_DIR) is refused, never chmodded.
    """
    st = data_dir.stat()
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid != os.geteuid():
        raise _refuse(f"{data_dir} belongs to uid {st.st_uid}, not to this user (uid {os.geteuid()})")
    if mode & (stat.S_ISVTX | stat.S_IWOTH):
        raise _refuse(f"{data_dir} is a shared folder (mode {mode:04o}); give TGMS_DATA_DIR a folder of its own")
    # Under root: root's group, which PostgreSQL keeps, may enter (not list) to reach pgdata.
    wanted, group = (0o710, os.getegid()) if separate else (0o700, st.st_gid)
    if (mode, st.st_gid) != (wanted, group):
        ours = data_dir in created or (data_dir / "pgdata").is_dir() or set(os.listdir(data_dir)) <= _OUR_NAMES
        if not ours:
            raise _refuse(
                f"{data_dir} (mode {mode:04o}) holds files that are not TGMS's, and TGMS changes no such "
                f"folder: chmod {wanted:o} it, or set TGMS_DATA_DIR to a new folder"
            )
        if data_dir not in created:
            log.info("data directory %s was mode %04o: made %04o", data_dir, mode, wanted)
        os.chown(data_dir, -1, group)
        data_dir.chmod(wanted)
    for folder in created:
        os.chown(folder, -1, group)
        folder.chmod(wanted)
    # Earlier versions made these readable by everyone.
    for name, private in (("keep-running", 0o600), ("tui.log", 0o600), ("run", 0o700)):
        path = data_dir / name
        with contextlib.suppress(FileNotFoundError):
            if not path.is_symlink() and path.stat().st_uid == os.geteuid():
                path.chmod(private)


def _can_enter(st: os.stat_result, account: ServerAccount) -> bool:
    if st.st_uid == account.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid in account.groups:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _require_reachable(path: Path, account: ServerAccount, what: str) -> None:
    """Refuse unless the server's user can pass every folder down to `path` (TGMS opens none for it)."""
    for folder in reversed([path, *path.parents]):
        st = folder.stat()
        if not _can_enter(st, account):
            raise _refuse(
                f"as root, PostgreSQL runs as the user '{account.name}', which cannot enter {folder} "
                f"(mode {stat.S_IMODE(st.st_mode):04o}) on the way to {what}, and TGMS does not open "
                "folders for it: put TGMS_DATA_DIR (and TGMS) where other users may pass, e.g. /var/lib/tgms"
            )


def _require_private(folder: Path, account: ServerAccount, what: str) -> None:
    """Refuse unless `folder` is a real directory of the server's user that no one else may enter."""
    st = os.lstat(folder)
    mode = stat.S_IMODE(st.st_mode)
    if not stat.S_ISDIR(st.st_mode):
        raise _refuse(f"{what} {folder} is not a directory (a symlink?); remove it")
    if st.st_uid != account.uid:
        raise _refuse(f"{what} {folder} belongs to uid {st.st_uid}, not to uid {account.uid}; remove it")
    if mode & 0o077:
        raise _refuse(f"{what} {folder} is open to other users (mode {mode:04o}); stop the server and remove it")


def _start_or_join(pgdata: Path, account: ServerAccount, cleanup: CleanupMode) -> Any:
    import pgserver

    if pgdata in pgserver.PostgresServer._instances:
        return pgserver.PostgresServer._instances[pgdata]
    with contextlib.suppress(FileExistsError):
        pgdata.mkdir(mode=0o700)
    return _private_server_class()(pgdata, cleanup_mode=cleanup)


def _private_server_class() -> type:
    """pgserver's server with TGMS's start-up: its process bookkeeping (who uses the server, who stops
    it) is kept; how the cluster is created and where it listens is TGMS's (see the module docstring)."""
    import psutil
    from pgserver import PostgresServer
    from pgserver._commands import POSTGRES_BIN_PATH, initdb, pg_ctl  # type: ignore[attr-defined]
    from pgserver.utils import PostmasterInfo, ensure_folder_permissions

    class PrivatePostgresServer(PostgresServer):
        def ensure_pgdata_inited(self) -> None:
            account = _server_account()
            if account.separate:
                st = self.pgdata.stat()
                if st.st_uid != account.uid:
                    os.chown(self.pgdata, account.uid, account.gid)
                # The package's own files only (not the folders above them): pgserver's user runs them.
                readable, runnable = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
                ensure_folder_permissions(POSTGRES_BIN_PATH, readable | runnable)
                ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", readable)
            if (self.pgdata / "PG_VERSION").exists():
                return
            # A server still running on a deleted cluster of the same path would fight the new one.
            for proc in psutil.process_iter(attrs=["name", "cmdline"]):
                if proc.info["name"] == "postgres" and str(self.pgdata) in (proc.info["cmdline"] or []):
                    proc.terminate()
                    with contextlib.suppress(psutil.TimeoutExpired):
                        proc.wait(2)
                    if proc.is_running():
                        proc.kill()
            initdb(
                ["--auth-local=trust", "--auth-host=reject", "--encoding=utf8", "-U", self.postgres_user],
                pgdata=self.pgdata,
                user=self.system_user,
            )

        def ensure_postgres_running(self) -> None:
            _forget_dead_processes(self.global_process_id_list)  # pgserver calls this under its lock
            account = _server_account()
            info = PostmasterInfo.read_from_pgdata(self.pgdata)
            if info is None or not info.is_running():
                self._start(account)
                info = PostmasterInfo.read_from_pgdata(self.pgdata)
            assert info is not None and info.is_running() and info.status == "ready"
            if info.hostname:
                raise _refuse(f"the server in {self.pgdata} listens on TCP ({info.hostname}); stop it")
            if info.socket_dir is None:
                raise _refuse(f"the server in {self.pgdata} has no Unix socket; stop it")
            _require_private(info.socket_dir, account, "the socket folder")
            self._postmaster_info = info

        def _start(self, account: ServerAccount) -> None:
            socket_dir = socket_dir_for(self.pgdata, account)
            if socket_dir != self.pgdata:
                try:
                    socket_dir.mkdir(mode=0o700)
                    if account.separate:
                        os.chown(socket_dir, account.uid, account.gid)
                except FileExistsError:
                    pass
            _require_private(socket_dir, account, "the socket folder")
            options = f"-h '' -k {shlex.quote(str(socket_dir))} -c unix_socket_permissions=0700"
            try:
                pg_ctl(
                    ["-w", "-t", "60", "-o", options, "-l", str(self.log), "start"],
                    pgdata=self.pgdata,
                    user=self.system_user,
                    timeout=90,
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
                raise RuntimeError(f"embedded PostgreSQL did not start; its log: {self.log}") from err
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                info = PostmasterInfo.read_from_pgdata(self.pgdata)
                if info is not None and info.is_running() and info.status == "ready":
                    return
                time.sleep(0.1)
            raise RuntimeError(f"embedded PostgreSQL did not become ready; its log: {self.log}")

        def _cleanup(self) -> None:
            with self._lock:
                _forget_dead_processes(self.global_process_id_list)
            super()._cleanup()

    return PrivatePostgresServer
