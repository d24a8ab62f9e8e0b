"""`python -m workers.main`: the main worker (job types not starting with 'tgms_')."""

from tgms_tui.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["worker", "main"]))
