"""Run a process's entry point so that every failure is one line on stderr and a non-zero exit code,
and so that SIGTERM is a clean stop.

`tgms` and the role entry points (`python -m workers.main`, `python -m webhook_server`, ...) share it,
so the same failure reads the same everywhere and never as a traceback.

SIGTERM (what systemd, Docker and `kill` send) and SIGHUP (a closed terminal) end a Python process at
once by default: no `finally` block and no exit hook runs, so the embedded PostgreSQL's list of the
processes using it keeps the dead pid and that server is never stopped again. `exit_on_termination()`
turns them into `Terminated`, which unwinds like Ctrl-C does. A role that stops gracefully on SIGTERM
(the workers, uvicorn, the TUI) installs its own handler while it runs and exits 0; before that, or in a
one-shot command, SIGTERM exits 143 (128 + 15, the shell's convention).
"""

from __future__ import annotations

import logging
import re
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

from tgms_tui.backend.config import ConfigError
from tgms_tui.backend.redaction import redact

TERMINATED_EXIT = 128 + signal.SIGTERM

# postgresql://user:password@host → postgresql://user:***@host (libpq may quote a URL it could not parse).
_URL_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)[^@\s]*@")


class Terminated(SystemExit):
    """SIGTERM or SIGHUP arrived: unwind (finally blocks, exit hooks) and exit 143."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(128 + signum)
        self.signum = signum


# The signal that asked this process to stop, once one did: an error raised while unwinding from it
# (a half-opened connection, a task cut mid-step) is a consequence of the stop, not a crash.
_terminated_by: int | None = None


def _terminate(signum: int, frame: FrameType | None) -> None:
    global _terminated_by
    _terminated_by = signum
    raise Terminated(signum)


def exit_on_termination() -> None:
    """Make SIGTERM and SIGHUP raise `Terminated` in this process (main thread only; a handler
    someone else installed is left alone). Idempotent."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _terminate)


def one_line(exc: BaseException) -> str:
    """The exception's text on one line, secrets and database passwords removed."""
    parts = [part.strip() for part in str(exc).splitlines() if part.strip()]
    text = " ".join(p if p[-1] in ".:;,?!" or i == len(parts) - 1 else p + "." for i, p in enumerate(parts))
    text = text or type(exc).__name__
    return redact(_URL_PASSWORD.sub(r"\1***@", text))


def _database_error(exc: BaseException) -> bool:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency of the backend
        return False
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


def run_entry_point(main: Callable[[], int | None], prog: str = "tgms", what: str | None = None) -> int:
    """`main()`'s exit code; 2 on a configuration error or a missing module, 130 on Ctrl-C, 143 on
    SIGTERM before the role took over the signal (also when an error follows it while unwinding), else 1."""
    exit_on_termination()
    label = f"{prog}: {what}" if what else prog
    try:
        return int(main() or 0)
    except ConfigError as exc:
        print(f"{prog}: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Terminated as exc:
        return int(exc.code or TERMINATED_EXIT)
    except ModuleNotFoundError as exc:
        print(f"{label}: not available ({exc})", file=sys.stderr)
        return 2
    except Exception as exc:  # the promise: one clear line, never a traceback
        if _database_error(exc):
            print(
                f"{label}: cannot use the database: {one_line(exc)} "
                "(check DATABASE_URL and that PostgreSQL is running)",
                file=sys.stderr,
            )
        else:
            print(f"{prog}: {what or 'error'}: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            raise
        if _terminated_by is not None:  # the error came while stopping as asked: the stop's status
            return 128 + _terminated_by
        return 1
