"""The reliability table: what each scenario injected, what it checked, the outcome and its numbers.

A test fills a `ScenarioRecord` through the `scenario` fixture (tests/reliability/conftest.py); its
pass/fail comes from pytest's report, never from the test itself. The rows are printed as a
Markdown table at the end of the run and, when TGMS_RELIABILITY_RESULTS names a file, written there as
JSON for `bench/reliability_table.py`, which puts the table into docs/reliability.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS_ENV = "TGMS_RELIABILITY_RESULTS"


@dataclass
class ScenarioRecord:
    """One row: `key` orders the table ("1", "4b" ...), `numbers` are the measurements, in order."""

    key: str
    title: str
    injected: str = ""
    checked: str = ""
    numbers: dict[str, Any] = field(default_factory=dict)
    outcome: str = "not run"
    seconds: float = 0.0

    def measure(self, name: str, value: Any) -> Any:
        """Keep a measurement for the table (returned, so it can be used inline)."""
        self.numbers[name] = value
        return value


# The `scenario` fixture: scenario(key, title, injected=..., checked=...) -> the test's row.
ScenarioFactory = Callable[..., ScenarioRecord]


def _sort_key(record: ScenarioRecord) -> tuple[int, str]:
    digits = "".join(ch for ch in record.key if ch.isdigit())
    return (int(digits or 0), record.key)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def render_table(records: list[ScenarioRecord]) -> str:
    """The Markdown table of `records`, ordered by scenario."""
    lines = [
        "| # | scenario | injected | checked | result | measured |",
        "|---|---|---|---|---|---|",
    ]
    for r in sorted(records, key=_sort_key):
        numbers = "; ".join(f"{k} {_number(v)}" for k, v in r.numbers.items())
        numbers = f"{numbers}; test time {r.seconds:.1f} s" if numbers else f"test time {r.seconds:.1f} s"
        lines.append(
            f"| {r.key} | {_cell(r.title)} | {_cell(r.injected)} | {_cell(r.checked)} | "
            f"**{r.outcome}** | {_cell(numbers)} |"
        )
    return "\n".join(lines)


def write_json(records: list[ScenarioRecord], path: Path) -> None:
    path.write_text(json.dumps([asdict(r) for r in sorted(records, key=_sort_key)], indent=1, default=str))


def read_json(path: Path) -> list[ScenarioRecord]:
    return [ScenarioRecord(**row) for row in json.loads(path.read_text())]
