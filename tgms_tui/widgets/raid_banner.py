"""The dashboard's raid banner: shown while the fleet or a group is on raid hold (no join request is
approved there; new ones wait as 'held'), naming the groups, the held requests and the keys to act.
Hidden otherwise; a quieter line remains while held requests still wait after the holds ended."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tgms_tui.backend.dashboard import HELD_COUNT_CAP, RaidHolds

from . import format as fmt

KEYS = "Q: join queue (decide; r / R release a group / the fleet) · H on a group: release it"


def held_count(n: int) -> str:
    return f"more than {HELD_COUNT_CAP:,}" if n > HELD_COUNT_CAP else f"{n:,}"


def banner(holds: RaidHolds) -> Text:
    """The banner's text ('' when there is nothing to say). Titles come from Telegram: literal."""
    out = Text()
    if holds.active:
        out.append("⚠ RAID HOLD", style="bold")
        if holds.fleet_held_until is not None:
            out.append(f" · FLEET on hold until {holds.fleet_held_until:%H:%M:%S}", style="bold")
        if holds.groups_held:
            out.append(f" · {holds.groups_held:,} group(s) on hold: ")
            for i, g in enumerate(holds.groups):
                if i:
                    out.append(", ")
                out.append(fmt.plain(g.title or g.group_id, 30), style="bold")
                out.append(f" ({g.held_requests:,} held, until {g.held_until:%H:%M:%S})")
            if holds.groups_held > len(holds.groups):
                out.append(f", and {holds.groups_held - len(holds.groups):,} more")
        out.append(f" · {held_count(holds.held_requests)} request(s) held · {KEYS}")
    elif holds.held_requests:
        out.append(f"No raid hold now; {held_count(holds.held_requests)} held request(s) wait in the queue (Q).")
    return out


class RaidBanner(Static):
    """One or two lines above the panes; hidden when nothing is held."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__("", **kwargs)  # type: ignore[arg-type]
        self.holds: RaidHolds | None = None

    def show(self, holds: RaidHolds) -> None:
        self.holds = holds
        text = banner(holds)
        self.update(text)
        self.set_class(holds.active, "-active")
        self.set_class(bool(text.plain), "-shown")
