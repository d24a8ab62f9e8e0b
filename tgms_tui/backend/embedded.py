"""The embedded PostgreSQL used when DATABASE_URL is unset.

pgserver ships PostgreSQL binaries in a wheel and lets several processes share one server in one
data directory: the first `tgms` process starts it, later ones join it, and (by default) the last one
to exit stops it. That is what lets `tgms tui`, `tgms webhook` and `tgms worker` on one machine share
one database with nothing installed by hand.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

CleanupMode = Literal["stop", "delete"] | None

_servers: dict[Path, Any] = {}


def embedded_url(data_dir: Path, *, cleanup: CleanupMode = "stop") -> str:
    """Start or join the embedded server in `data_dir/pgdata` and return its URL.

    cleanup="stop" stops the server when the last process using it exits; None leaves it running
    and pins it (`tgms db url`: the user wants to connect to the printed URL), so that later processes
    do not stop it either until `tgms db stop`; "delete" also removes the data (tests).
    """
    pgdata = (data_dir / "pgdata").resolve()
    pin = _pin_file(data_dir)
    if cleanup is None:
        pin.parent.mkdir(parents=True, exist_ok=True)
        pin.touch()
    elif cleanup == "stop" and pin.exists():
        cleanup = None
    server = _servers.get(pgdata)
    if server is None:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        # pgserver wants XDG_RUNTIME_DIR for its lock files and warns loudly without it.
        os.environ.setdefault("XDG_RUNTIME_DIR", str(pgdata.parent / "run"))
        Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver

            log.info("starting or joining embedded PostgreSQL in %s", pgdata)
            server = pgserver.get_server(pgdata, cleanup_mode=cleanup)
        _servers[pgdata] = server
    return str(server.get_uri())


def _pin_file(data_dir: Path) -> Path:
    return data_dir.resolve() / "keep-running"


def stop_embedded(data_dir: Path) -> bool:
    """Stop the embedded server in `data_dir` if it is running (and unpin it); True when one was stopped."""
    import subprocess

    _pin_file(data_dir).unlink(missing_ok=True)
    pgdata = (data_dir / "pgdata").resolve()
    if not (pgdata / "postmaster.pid").exists():
        return False
    from pgserver import _commands

    # As root, pgserver runs PostgreSQL as its own 'pgserver' user; pg_ctl must run as that user too.
    user = "pgserver" if os.geteuid() == 0 else None
    try:
        _commands.pg_ctl(["-m", "fast", "-w", "stop"], pgdata=pgdata, user=user)  # type: ignore[attr-defined]
    except subprocess.CalledProcessError:
        return False
    return True
