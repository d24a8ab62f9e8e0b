"""Every key and action of the control center, in one table.

The help screen lists it, the command palette offers it, and `--read-only` uses its `mutating` flag
to hide and refuse actions. A test checks that every binding in the app appears here, so the help
screen cannot fall behind the keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from textual.app import App
    from textual.screen import Screen

Target = Literal["app", "screen", "groups", "jobs", "pane", "none"]


@dataclass(frozen=True)
class ActionSpec:
    key: str
    action: str
    description: str
    scope: str
    target: Target = "none"  # where the palette runs it; "none" = key-only (not in the palette)
    mutating: bool = False


ACTIONS: tuple[ActionSpec, ...] = (
    # Everywhere
    ActionSpec("q", "quit", "Quit", "Global", "app"),
    ActionSpec("?", "help", "Help: every key", "Global", "app"),
    ActionSpec("ctrl+p", "command_palette", "Command palette (every action)", "Global"),
    # Dashboard
    ActionSpec("b", "compose", "Compose a broadcast", "Dashboard", "screen", mutating=True),
    ActionSpec("/", "filter", "Filter the focused pane", "Dashboard", "screen"),
    ActionSpec("escape", "clear_filter", "Clear the focused pane's filter", "Dashboard", "screen"),
    ActionSpec("p", "toggle_pause", "Pause / resume live updates", "Dashboard", "screen"),
    ActionSpec("ctrl+r", "refresh_now", "Refresh now", "Dashboard", "screen"),
    ActionSpec("1", "focus_pane('groups')", "Focus the groups pane", "Dashboard", "screen"),
    ActionSpec("2", "focus_pane('jobs')", "Focus the jobs pane", "Dashboard", "screen"),
    ActionSpec("3", "focus_pane('workers')", "Focus the workers pane", "Dashboard", "screen"),
    ActionSpec("4", "focus_pane('joins')", "Focus the join requests pane", "Dashboard", "screen"),
    ActionSpec("tab", "focus_next", "Next pane (shift+tab: previous)", "Dashboard"),
    # Any table
    ActionSpec("s", "cycle_sort", "Sort by the next column (or click a header)", "Tables", "pane"),
    ActionSpec("S", "reverse_sort", "Reverse the sort order", "Tables", "pane"),
    ActionSpec("↑ ↓ j k", "cursor_down", "Move the cursor (the row under it stays selected on refresh)", "Tables"),
    ActionSpec("pgup pgdn", "page_down", "A page up / down", "Tables"),
    ActionSpec("home end g G", "first", "First / last row", "Tables"),
    ActionSpec("click", "click", "A row selects it; a column header sorts by it", "Tables"),
    # Groups pane
    ActionSpec("enter", "detail", "Group detail: history, join requests, broadcasts, kicks", "Groups", "groups"),
    ActionSpec("space", "mark", "Mark / unmark for a broadcast to marked groups", "Groups", "groups"),
    ActionSpec("u", "clear_marks", "Unmark all groups", "Groups", "groups"),
    ActionSpec(
        "a", "toggle_active", "Activate / deactivate (asks before deactivating)", "Groups", "groups", mutating=True
    ),
    ActionSpec("P", "set_phase", "Set phase: growth / monitoring", "Groups", "groups", mutating=True),
    ActionSpec("f", "toggle_final", "Allow / forbid the final message", "Groups", "groups", mutating=True),
    ActionSpec("r", "refresh_members", "Refresh the member count now", "Groups", "groups", mutating=True),
    # Jobs pane
    ActionSpec("enter", "job_detail", "Job payload and error", "Jobs", "jobs"),
    ActionSpec("R", "retry_job", "Retry a failed (or cancelled) job", "Jobs", "jobs", mutating=True),
    ActionSpec("x", "cancel_job", "Cancel a pending job (asks first)", "Jobs", "jobs", mutating=True),
    # Composer
    ActionSpec("ctrl+s", "review", "Composer: review and send (asks first)", "Composer", mutating=True),
    ActionSpec("escape", "cancel", "Composer, detail and progress screens: back", "Composer"),
    # Confirmations
    ActionSpec("y", "yes", "Confirm", "Confirm"),
    ActionSpec("n", "no", "Decline (escape too)", "Confirm"),
)

MUTATING_ACTIONS = frozenset(a.action for a in ACTIONS if a.mutating)


def is_allowed(app: App[Any], action: str) -> bool:
    """False for a mutating action in read-only mode (bindings then vanish from the footer)."""
    return not (getattr(app, "read_only", False) and action in MUTATING_ACTIONS)


def palette_actions(app: App[Any], screen: Screen[Any] | None = None) -> Iterator[ActionSpec]:
    """What the palette offers on `screen` (the one under the palette; mutations left out when
    read-only)."""
    from .dashboard import DashboardScreen

    on_dashboard = isinstance(screen or app.screen, DashboardScreen)
    for spec in ACTIONS:
        if spec.target == "none" or not is_allowed(app, spec.action):
            continue
        if spec.target != "app" and not on_dashboard:
            continue
        yield spec


async def run_spec(app: App[Any], spec: ActionSpec, screen: Screen[Any]) -> None:
    """Run an action from the palette on the widget that owns it."""
    from .dashboard import DashboardScreen

    if spec.target == "app":
        await app.run_action(spec.action)
        return
    if not isinstance(screen, DashboardScreen):
        return
    if spec.target == "screen":
        await app.run_action(spec.action, screen)
        return
    pane = screen.pane_for(spec.target)
    pane.focus()
    await app.run_action(spec.action, pane)


class TGMSCommands(Provider):
    """The command palette (ctrl+p): every action with its key."""

    def _label(self, spec: ActionSpec) -> str:
        scope = "" if spec.scope in ("Global", "Dashboard") else f"{spec.scope}: "
        return f"{scope}{spec.description}"

    async def discover(self) -> Hits:
        for spec in palette_actions(self.app, self.screen):
            yield DiscoveryHit(
                self._label(spec), partial(run_spec, self.app, spec, self.screen), help=f"key: {spec.key}"
            )

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for spec in palette_actions(self.app, self.screen):
            label = self._label(spec)
            score = matcher.match(f"{label} {spec.key}")
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(label),
                    partial(run_spec, self.app, spec, self.screen),
                    help=f"key: {spec.key}",
                )
