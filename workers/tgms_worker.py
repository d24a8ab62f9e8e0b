"""`python -m workers.tgms_worker`: the TGMS worker (job types starting with 'tgms_')."""

from tgms_tui.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["worker", "tgms"]))
