"""`python -m webhook_server`: the same as `tgms webhook`."""

from __future__ import annotations

import argparse

from tgms_tui.backend.entrypoint import run_entry_point

from .cli import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m webhook_server", description="Serve the Telegram webhook and admin API (uvicorn)."
    )
    add_arguments(parser)
    return run_entry_point(lambda: run(parser.parse_args(argv)), "webhook_server")


if __name__ == "__main__":
    raise SystemExit(main())
