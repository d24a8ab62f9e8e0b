"""An A/B broadcast's variant table and verdict, as the broadcast's progress screen shows it.

Variant texts come from operators but are shown through the safe-text helpers like any message text.
"""

from __future__ import annotations

from rich.text import Text

from tgms_tui.backend import ab_stats
from tgms_tui.backend.broadcast_variants import AbReport

from . import format as fmt


def render_report(r: AbReport) -> Text:
    """Per variant: groups, delivered, clicks, click rate; then the winner and the evidence in words."""
    out = Text()
    tracked = "links tracked" if r.track_clicks else "links not tracked"
    out.append(f"A/B · {tracked} · {r.clicks:,} click(s)", style="bold")
    if r.held_back:
        out.append(f" · {r.held_back:,} group(s) held back for the winner")
    if r.winner_of is not None:
        out.append(f" · winner of broadcast {r.winner_of} (variant {ab_stats.label(r.winner_variant or 0)})")
    if r.variants:
        out.append(f"\n{'variant':<8}{'groups':>8}{'delivered':>11}{'reach':>9}{'clicks':>8}{'click rate':>12}  text")
        for v in r.variants:
            style = "bold green" if r.verdict is not None and r.verdict.winner == v.variant else ""
            out.append(f"\n{v.label:<8}{v.groups:>8,}{v.delivered:>11,}{v.reach:>9,}{v.clicks:>8,}", style=style)
            out.append(f"{100 * v.rate:>11.2f}%  ", style=style)
            out.append(fmt.plain(r.bodies.get(v.variant, ""), 50))
    if r.verdict is not None:
        style = "bold green" if r.verdict.winner is not None else "yellow"
        out.append(f"\n{r.verdict.statement}", style=style)
        if r.held_back and r.winner_broadcast_id is None:
            out.append("   W: send the winner to the held-back groups", style="dim")
    if r.winner_broadcast_id is not None:
        out.append(f"\nThe winner went to the held-back groups as broadcast {r.winner_broadcast_id}.")
    return fmt.made_safe(out)
