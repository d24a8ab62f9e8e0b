"""Run the reliability suite (tests/reliability) and put its results table into
docs/reliability.md.

    ./dev.sh bench reliability_table              # run, print the table, rewrite it in docs/reliability.md
    ./dev.sh bench reliability_table --no-write   # run and print only
    ./dev.sh bench reliability_table -- -k burst  # anything after -- goes to pytest

The table comes from the tests themselves (tests/reliability/conftest.py records what each scenario
injected, what it checked, pytest's verdict and the measured numbers), so it cannot claim more than
the run proved. Exits with pytest's status.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.reliability.results import RESULTS_ENV, read_json, render_table  # noqa: E402

DOC = ROOT / "docs" / "reliability.md"
START, END = "<!-- reliability-table:start -->", "<!-- reliability-table:end -->"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-write", action="store_true", help="print the table, leave docs/reliability.md alone")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tgms-reliability-") as tmp:
        results = Path(tmp) / "results.json"
        cmd = [sys.executable, "-m", "pytest", "-m", "slow", "tests/reliability", "-q", "-p", "no:cacheprovider",
               *args.pytest_args]  # fmt: skip
        started = dt.datetime.now(dt.UTC)
        status = subprocess.call(cmd, cwd=ROOT, env={**os.environ, RESULTS_ENV: str(results)})
        if not results.exists():
            print("reliability_table: the run produced no results", file=sys.stderr)
            return status or 1
        records = read_json(results)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    total = sum(r.seconds for r in records)
    header = (
        f"Run {started:%Y-%m-%d %H:%M} UTC on {os.cpu_count()} CPU(s), {platform.python_implementation()} "
        f"{platform.python_version()}, load average {load:.1f} at the end; scenario tests took {total:.0f} s "
        f"in all. pytest exit status {status}."
    )
    table = render_table(records)
    print(f"\n{header}\n\n{table}")
    if not args.no_write:
        text = DOC.read_text()
        before, _, rest = text.partition(START)
        _, _, after = rest.partition(END)
        DOC.write_text(f"{before}{START}\n{header}\n\n{table}\n{END}{after}")
        print(f"\nwritten to {DOC.relative_to(ROOT)}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
