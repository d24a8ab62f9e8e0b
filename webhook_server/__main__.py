"""`python -m webhook_server`: the same as `tgms webhook`."""

from __future__ import annotations

import argparse
import sys

from tgms_tui.backend.config import ConfigError

from .cli import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m webhook_server", description="Serve the Telegram webhook and admin API (uvicorn)."
    )
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except ConfigError as exc:
        print(f"webhook_server: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
