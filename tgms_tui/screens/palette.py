"""The command palette (ctrl+p): every action of `actions.ACTIONS` with its key, run where it belongs."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

from textual.app import App
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import Screen

from .actions import ACTIONS, ActionSpec, is_allowed
from .dashboard import DashboardScreen


def palette_actions(app: App[Any], screen: Screen[Any] | None = None) -> Iterator[ActionSpec]:
    """What the palette offers on `screen` (the one under the palette; mutations left out when
    read-only)."""
    on_dashboard = isinstance(screen or app.screen, DashboardScreen)
    for spec in ACTIONS:
        if spec.target == "none" or not is_allowed(app, spec.action):
            continue
        if spec.target != "app" and not on_dashboard:
            continue
        yield spec


async def run_spec(app: App[Any], spec: ActionSpec, screen: Screen[Any]) -> None:
    """Run an action from the palette on the widget that owns it."""
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
