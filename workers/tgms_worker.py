"""`python -m workers.tgms_worker`: the TGMS worker (job types starting with 'tgms_')."""

from tgms_tui.backend.entrypoint import run_entry_point
from workers.cli import run_pool

if __name__ == "__main__":
    raise SystemExit(run_entry_point(lambda: run_pool("tgms"), what="worker"))
