"""Run a process's entry point so that every failure is one line on stderr and a non-zero exit code.

`tgms` and the role entry points (`python -m workers.main`, `python -m webhook_server`, ...) share it,
so the same failure reads the same everywhere and never as a traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from tgms_tui.backend.config import ConfigError
from tgms_tui.backend.redaction import redact


def run_entry_point(main: Callable[[], int | None], prog: str = "tgms", what: str | None = None) -> int:
    """`main()`'s exit code; 2 on a configuration error or a missing module, 130 on Ctrl-C, else 1."""
    try:
        return int(main() or 0)
    except ConfigError as exc:
        print(f"{prog}: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except ModuleNotFoundError as exc:
        print(f"{prog}: {what}: not available ({exc})", file=sys.stderr)
        return 2
    except Exception as exc:  # the promise: one clear line, never a traceback
        print(f"{prog}: {what or 'error'}: {type(exc).__name__}: {redact(str(exc))}", file=sys.stderr)
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            raise
        return 1
