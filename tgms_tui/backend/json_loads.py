"""How every TGMS process loads json/jsonb values from PostgreSQL.

PostgreSQL's numeric has no digit limit and prints `1e5000` as 5001 digits, while Python refuses to
turn more than 4300 digits into an int (a guard against quadratic parsing). With psycopg's default
loader one such number in one job payload would make every claim that selects it fail, and the worker
would stall on it forever. Here the normal path is plain `json.loads`; only a value it refuses is
loaded again with over-long integers read as floats.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from psycopg.types.json import set_json_loads

_MAX_INT_DIGITS = sys.get_int_max_str_digits() or 4300


def _int_or_float(text: str) -> int | float:
    digits = len(text) - text.startswith("-")
    return int(text) if digits <= _MAX_INT_DIGITS else float(text)


def loads(data: str | bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return json.loads(data, parse_int=_int_or_float)


def install() -> None:
    """Use `loads` for json and jsonb on every connection of this process (idempotent)."""
    set_json_loads(loads)
