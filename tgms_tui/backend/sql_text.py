"""SQL text as the hot path sends it.

psycopg converts a query's `%(name)s` placeholders with a regular expression and caches the result
only for queries of at most 4,096 characters (`psycopg._queries.MAX_CACHED_STATEMENT_LENGTH`); a
longer one is converted again on every execution. The indentation that makes a long statement
readable is a quarter of its length, so `compact` drops it once, at import.
"""

from __future__ import annotations

# psycopg's limit for caching a query's conversion (see the module docstring).
CONVERSION_CACHE_LIMIT = 4096


def compact(sql: str) -> str:
    """`sql` without leading and trailing blanks on each line, nor empty lines (line breaks are kept:
    they end `--` comments)."""
    return "\n".join(stripped for line in sql.splitlines() if (stripped := line.strip()))
