"""SQL on TGMS's tables lives in tgms_tui/backend/ only: one repository per table family owns its
statements and rules, so no rule (when a group is deactivated, when a worker is alive) is written
twice. Every other module of the packages reaches the tables through the backend. Tests and
benchmarks may seed with SQL of their own."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tgms_tui", "webhook_server", "workers", "telegram_sim")
BACKEND = ROOT / "tgms_tui" / "backend"


def tables() -> set[str]:
    """Every table the migrations create."""
    found = set()
    for migration in sorted((ROOT / "sql").glob("*.sql")):
        found |= set(re.findall(r"CREATE TABLE(?: IF NOT EXISTS)?\s+(\w+)", migration.read_text(), re.IGNORECASE))
    return found


def _strings(tree: ast.Module) -> list[str]:
    """The string literals of a module (f-strings with their placeholders blanked), docstrings excepted."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            out.append("".join(str(v.value) if isinstance(v, ast.Constant) else " x " for v in node.values))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str | bytes) and id(node) not in docstrings:
            value = node.value
            out.append(value.decode("utf-8", "replace") if isinstance(value, bytes) else value)
    return out


def sql_in(path: Path) -> list[str]:
    """The SQL fragments on TGMS's tables in one module."""
    names = "|".join(sorted(tables()))
    statement = re.compile(rf"\b(?:FROM|INTO|UPDATE|JOIN|TABLE|TRUNCATE)\s+(?:ONLY\s+)?(?:{names})\b", re.IGNORECASE)
    return [m.group(0) for text in _strings(ast.parse(path.read_text(), str(path))) for m in statement.finditer(text)]


def offenders() -> dict[str, list[str]]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if BACKEND not in path.parents and (hits := sql_in(path)):
                found[path.relative_to(ROOT).as_posix()] = hits
    return found


def test_the_migrations_name_the_tables() -> None:
    assert {"jobs", "managed_groups", "sent_messages", "bot_health", "webhook_updates", "rate_buckets"} <= tables()


def test_sql_on_tgms_tables_lives_in_the_backend() -> None:
    found = offenders()
    assert not found, f"SQL on TGMS's tables outside tgms_tui/backend/ (use or add a repository there): {found}"


def test_the_check_sees_sql() -> None:
    """The scanner finds SQL where it is (f-strings included), so a passing check means something."""
    assert sql_in(BACKEND / "groups.py") and sql_in(BACKEND / "health.py") and sql_in(BACKEND / "broadcasts.py")


def test_statements_with_named_placeholders_fit_psycopgs_conversion_cache() -> None:
    """psycopg re-parses a `%(name)s` query longer than its cache limit on every execution (about a
    tenth of a join request's worker CPU when the begin statement outgrew it): such statements are
    kept within it, with `sql_text.compact` where their indentation would not fit."""
    import importlib
    import pkgutil

    import psycopg._queries

    import tgms_tui.backend as backend
    from tgms_tui.backend.sql_text import CONVERSION_CACHE_LIMIT

    assert psycopg._queries.MAX_CACHED_STATEMENT_LENGTH == CONVERSION_CACHE_LIMIT
    too_long = []
    for info in pkgutil.iter_modules(backend.__path__):
        module = importlib.import_module(f"tgms_tui.backend.{info.name}")
        for name, value in vars(module).items():
            named = name.startswith("SQL") and isinstance(value, str) and "%(" in value
            if named and len(value) > CONVERSION_CACHE_LIMIT:
                too_long.append(f"{info.name}.{name}: {len(value)} characters")
    assert not too_long, too_long
