"""How values read on screen: ages, counts, trends and status words that work without colour.

Every state that matters has a glyph or a word as well as a colour (a monochrome terminal, a screen
reader or a colour-blind operator must see a failing group just as well).
"""

from __future__ import annotations

from datetime import datetime

from rich.text import Text

STATUS_GLYPHS: dict[str, str] = {
    # jobs
    "pending": "… pending",
    "running": "▶ running",
    "done": "✓ done",
    "failed": "✗ FAILED",
    "cancelled": "– cancelled",
    # deliveries
    "queued": "… queued",
    "sending": "▶ sending",
    "sent": "✓ sent",
    "ambiguous": "? AMBIGUOUS",
    "skipped": "– skipped",
    # join requests
    "approved": "✓ approved",
    "already_member": "= member",
    "skipped_unmanaged": "– unmanaged",
    "skipped_inactive": "– inactive",
    "expired": "– expired",
}

STATUS_STYLES: dict[str, str] = {
    "failed": "bold red",
    "ambiguous": "bold yellow",
    "running": "cyan",
    "sending": "cyan",
    "pending": "",
    "queued": "",
    "done": "green",
    "sent": "green",
    "approved": "green",
    "cancelled": "dim",
    "skipped": "dim",
}


def text(value: object, style: str = "", limit: int | None = None) -> Text:
    """Literal text (never parsed as markup: titles and errors may contain '[')."""
    s = "" if value is None else str(value).replace("\n", " ")
    if limit is not None and len(s) > limit:
        s = s[: max(0, limit - 1)] + "…"
    return Text(s, style=style, no_wrap=True, end="")


def status(value: str) -> Text:
    label = STATUS_GLYPHS.get(value, value)
    style = STATUS_STYLES.get(value, "bold red" if "fail" in value or "error" in value else "")
    return Text(label, style=style, no_wrap=True, end="")


def age(seconds: float | None) -> str:
    """Compact age: 42s, 7m, 3h, 2d (as htop and k9s show it)."""
    if seconds is None:
        return "—"
    s = max(0.0, seconds)
    if s < 60:
        return f"{s:.0f}s" if s >= 10 else f"{s:.1f}s"
    if s < 3600:
        return f"{s // 60:.0f}m{s % 60:02.0f}s" if s < 600 else f"{s // 60:.0f}m"
    if s < 86400:
        return f"{s // 3600:.0f}h{(s % 3600) // 60:02.0f}m"
    return f"{s // 86400:.0f}d{(s % 86400) // 3600:02.0f}h"


def duration(seconds: float) -> str:
    """A human duration for estimates: '45s', '6m 09s', '2h 03m'."""
    s = round(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {(s % 3600) // 60:02d}m"


def timestamp(value: datetime | None) -> str:
    """Local time, short: today as HH:MM, older as MM-DD HH:MM (stable: no per-second churn)."""
    if value is None:
        return "never"
    local = value.astimezone()
    if local.date() == datetime.now().astimezone().date():
        return local.strftime("%H:%M:%S")
    return local.strftime("%m-%d %H:%M")


def count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def trend(delta: int | None) -> Text:
    """▲ +12 / ▼ -3 / = : direction readable without colour."""
    if delta is None:
        return Text("", no_wrap=True, end="")
    if delta > 0:
        return Text(f"▲{delta:+,}", style="green", no_wrap=True, end="")
    if delta < 0:
        return Text(f"▼{delta:,}", style="red", no_wrap=True, end="")
    return Text("=", style="dim", no_wrap=True, end="")
