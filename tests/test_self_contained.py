"""The repository explains itself: no file points at notes that live outside it (a planning folder,
a design memo, an issue tracker's numbers). What a contributor needs is in docs/architecture.md."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Built from parts so this file does not match itself.
OUTSIDE = re.compile(
    "|".join(
        [
            r"\.\./" + "shared",
            "shared/" + "(?:reference|seed)",
            "DESIGN" + r"\.md",
            r"\b[Ii]ssue" + r" #?\d+",
        ]
    )
)


def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / name for name in out.decode().split("\0") if name]


def test_no_file_cites_anything_outside_the_repository() -> None:
    found = []
    for path in tracked_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not found, "cites files outside the repository or issue numbers:\n" + "\n".join(found)


def test_the_pattern_matches_what_it_forbids() -> None:
    for sample in ("see ../" + "shared/x", "DESIGN" + ".md §5", "issue" + " #8", "Issue" + " 12"):
        assert OUTSIDE.search(sample), sample
