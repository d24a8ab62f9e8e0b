#!/usr/bin/env bash
# One entry point for newcomers and CI: creates .venv with everything TGMS needs (only python3 >= 3.11
# is required; PostgreSQL comes embedded), then runs what you asked for.
#   ./dev.sh demo [args]   the live demo (simulator + webhook + workers + TUI)
#   ./dev.sh test [args]   ruff, ruff format --check, mypy, then the whole test suite
#   ./dev.sh tgms ARGS     any tgms subcommand
#   ./dev.sh bench NAME    a benchmark from bench/
set -euo pipefail
cd "$(dirname "$0")"

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "dev.sh: Python >= 3.11 is required (found: $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 2
fi

stamp=.venv/.tgms-installed
if [ ! -x .venv/bin/python ] || [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "dev.sh: setting up .venv (first run takes a minute) ..." >&2
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip >&2
  .venv/bin/python -m pip install --quiet -e '.[dev]' >&2
  touch "$stamp"
fi

cmd=${1:-demo}
shift || true
case "$cmd" in
  demo) exec .venv/bin/tgms demo "$@" ;;
  test)
    # Lint, format and types first: a finding fails the run before any test starts.
    .venv/bin/ruff check .
    .venv/bin/ruff format --check .
    .venv/bin/mypy tgms_tui webhook_server workers telegram_sim tests bench
    set +e
    .venv/bin/python -m pytest "$@"
    rc=$?
    # pytest exits 5 when it collected nothing: that is a failure, not a pass.
    [ "$rc" -eq 5 ] && echo "dev.sh: no tests were collected" >&2 && exit 1
    exit "$rc" ;;
  tgms) exec .venv/bin/tgms "$@" ;;
  bench) name=$1; shift; exec .venv/bin/python "bench/${name%.py}.py" "$@" ;;
  *) echo "dev.sh: unknown command '$cmd' (demo, test, tgms, bench)" >&2; exit 2 ;;
esac
