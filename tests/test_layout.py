"""Which package may import which, checked on the syntax tree of every module (no import is run).

The backend is the shared core and knows no role. Each role — the TUI, the webhook server, the
workers, the simulator — imports the backend and never another role, so any of them runs, scales and
fails alone; the simulator, the oracle the Bot API client is tested against, shares nothing with the
workers. Only the `tgms` command layer, and the demo it starts, knows every role. An import inside a
function hides such an edge (or an import cycle), so the roles have none beyond the few listed below.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tgms_tui", "webhook_server", "workers", "telegram_sim")
OURS = {*PACKAGES, "tests", "bench"}

# `ls tgms_tui`: the Textual app (app, stylesheet, shared messages and errors, screens, widgets) and
# the three homes beside it.
TGMS_TUI_ENTRIES = {
    *("__init__.py", "__main__.py", "app.py", "app.tcss", "messages.py", "errors.py", "screens", "widgets"),
    *("backend", "commands", "demo"),
}

BACKEND, COMMANDS, DEMO, TUI = "tgms_tui.backend", "tgms_tui.commands", "tgms_tui.demo", "tui"
ROLES = {TUI, "webhook_server", "workers", "telegram_sim"}
EVERYTHING = {BACKEND, COMMANDS, DEMO, *ROLES}
MAY_IMPORT: dict[str, set[str]] = {
    BACKEND: {BACKEND},
    **{role: {BACKEND, role} for role in ROLES},
    COMMANDS: EVERYTHING,
    DEMO: EVERYTHING,
    "tgms_tui.__main__": {COMMANDS},  # `python -m tgms_tui` is `tgms tui`
}
BACKEND_NEVER = {"textual", "starlette", "uvicorn"}

# Inside the TUI imports run downwards: the app pushes screens, screens hold widgets, widgets post
# messages (a widget never opens a screen; the screen decides). `if TYPE_CHECKING:` imports are exempt.
TUI_RANK = {"tgms_tui.app": 3, "tgms_tui.screens": 2, "tgms_tui.widgets": 1, "tgms_tui.messages": 0}
TUI_RANK["tgms_tui.errors"] = 0

# (module file, imported module) -> why it is imported inside a function.
LAZY_ALLOWED = {
    ("telegram_sim/cli.py", "tgms_tui.backend.config"): "the simulator also runs without the rest of TGMS",
}


@dataclass(frozen=True)
class Import:
    file: str
    line: int
    module: str  # the module named after `import` or `from`, resolved ("tgms_tui.backend.config")
    target: str  # the imported name, fully qualified ("tgms_tui.backend.config.Settings", "textual.app.App")
    in_function: bool
    type_checking: bool

    def __str__(self) -> str:
        return f"{self.file}:{self.line} imports {self.target}"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(name: str) -> str:
    """The package a module (or a name in it) belongs to, for the rules above."""
    parts = name.split(".")
    if parts[0] != "tgms_tui":
        return parts[0]
    sub = parts[1] if len(parts) > 1 else "__init__"
    if sub in ("app", "messages", "errors", "screens", "widgets", "__init__"):
        return TUI
    return f"tgms_tui.{sub}"  # backend, commands, demo, __main__, or a module no rule knows


def imports_of(path: Path) -> list[Import]:
    rel = path.relative_to(ROOT).as_posix()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool, type_checking: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(rel, node.lineno, alias.name, alias.name, in_function, type_checking))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                target = base if alias.name == "*" else f"{base}.{alias.name}"
                found.append(Import(rel, node.lineno, base, target, in_function, type_checking))
        in_function = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        guarded = node.body if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test) else []
        for child in ast.iter_child_nodes(node):
            visit(child, in_function, type_checking or child in guarded)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=rel), False, False)
    return found


def all_imports() -> list[Import]:
    files = sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)
    assert len(files) > 100, "the packages were not found"
    return [imp for path in files for imp in imports_of(path)]


def importer(imp: Import) -> str:
    return module_name(ROOT / imp.file)


def test_tgms_tui_holds_the_app_and_the_homes_beside_it() -> None:
    entries = {p.name for p in (ROOT / "tgms_tui").iterdir() if p.name != "__pycache__"}
    assert entries == TGMS_TUI_ENTRIES


def test_imports_flow_one_way() -> None:
    wrong = []
    for imp in all_imports():
        source, target = layer(importer(imp)), layer(imp.target)
        if imp.target.split(".")[0] in OURS and target not in MAY_IMPORT.get(source, set()):
            wrong.append(f"{imp} ({source} may not import {target})")
    assert wrong == []


def test_the_backend_knows_no_ui_and_no_server() -> None:
    backend = [imp for imp in all_imports() if layer(importer(imp)) == BACKEND]
    assert backend, "the backend was not found"
    assert [str(imp) for imp in backend if imp.target.split(".")[0] in BACKEND_NEVER] == []


def test_the_tui_imports_downwards() -> None:
    def rank(name: str) -> int | None:
        return TUI_RANK.get(".".join(name.split(".")[:2]))

    wrong = []
    for imp in all_imports():
        mine, theirs = rank(importer(imp)), rank(imp.target)
        if mine is not None and theirs is not None and theirs > mine and not imp.type_checking:
            wrong.append(str(imp))
    assert wrong == []


def test_roles_import_nothing_inside_functions() -> None:
    lazy = [imp for imp in all_imports() if imp.in_function and layer(importer(imp)) in ROLES]
    unexplained = [str(imp) for imp in lazy if (imp.file, imp.module) not in LAZY_ALLOWED]
    assert unexplained == []
    still_needed = {(imp.file, imp.module) for imp in lazy}
    assert set(LAZY_ALLOWED) <= still_needed, "an allow-list entry no longer applies: remove it"
