"""How values read on screen: ages, counts, trends and status words that work without colour.

Every state that matters has a glyph or a word as well as a colour (a monochrome terminal, a screen
reader or a colour-blind operator must see a failing group just as well).
"""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise

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
    "doing": "▶ doing",
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
    "doing": "cyan",
    "pending": "",
    "queued": "",
    "done": "green",
    "sent": "green",
    "approved": "green",
    "cancelled": "dim",
    "skipped": "dim",
}


# Text from Telegram and users (titles, names, errors, payloads) reaches the screen only through
# `plain` / `text` / `literal`: never parsed as markup (a title `[/]` would end the app, `[@click=...]`
# would become an action), control characters made visible (an ESC sequence would reach the terminal)
# and bidi overrides and isolates made visible (an RTL override would reorder what the operator reads).
_BIDI = (*range(0x202A, 0x202F), *range(0x2066, 0x206A))  # embeddings, overrides, isolates
BIDI_CONTROLS = frozenset(map(chr, _BIDI))
_VISIBLE: dict[int, str] = {
    **{code: chr(0x2400 + code) for code in range(0x20)},  # C0 as control pictures: ␀ … ␛ … ␟
    0x7F: "\u2421",  # ␡
    **{code: f"\\x{code:02x}" for code in range(0x80, 0xA0)},  # C1, e.g. CSI (0x9b)
    **{code: f"<U+{code:04X}>" for code in _BIDI},
}
_ONE_LINE = str.maketrans({**_VISIBLE, 0x0A: " ", 0x09: " ", 0x2028: " ", 0x2029: " "})
_LINES = str.maketrans({**_VISIBLE, 0x0A: "\n", 0x09: "    ", 0x2028: "\n", 0x2029: "\n"})
SAFE_MAX = 4000  # no single value needs more on screen (a detail view wraps it; a cell cuts it)


def plain(value: object, limit: int | None = None, *, multiline: bool = False) -> str:
    """`value` as a string safe to show literally: control and bidi characters made visible, newlines
    folded to spaces unless `multiline`, cut to `limit` (… marks the cut). Still a *string*: give it
    to `Text(...)` or `literal(...)`, never to something that parses markup."""
    s = "" if value is None else str(value)
    if len(s) > SAFE_MAX:
        s = s[:SAFE_MAX]
    s = s.translate(_LINES if multiline else _ONE_LINE)
    if limit is not None and len(s) > limit:
        s = s[: max(0, limit - 1)] + "…"
    return s


def literal(value: object, style: str = "", limit: int | None = None, *, multiline: bool = True) -> Text:
    """A `Text` that shows `value` as it is (see `plain`): for detail views, dialogs and notices."""
    return Text(plain(value, limit, multiline=multiline), style=style)


def made_safe(styled: Text) -> Text:
    """`styled` with its control and bidi characters made visible (see `plain`), styles kept: for
    text styled from user input, such as the composer's preview of a message."""
    cuts = sorted({0, len(styled), *(s.start for s in styled.spans), *(s.end for s in styled.spans)})
    out = Text(style=styled.style, justify=styled.justify, no_wrap=styled.no_wrap, end=styled.end)
    for start, end in pairwise(cuts):
        piece = styled[start:end]
        at = len(out)
        out.append(plain(piece.plain, multiline=True))
        for span in piece.spans:
            out.stylize(span.style, at, len(out))
    return out


def text(value: object, style: str = "", limit: int | None = None) -> Text:
    """One line of literal text for a table cell (see `plain`)."""
    return Text(plain(value, limit), style=style, no_wrap=True, end="")


def status(value: str) -> Text:
    label = STATUS_GLYPHS.get(value) or plain(value, 40)
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


def capped_count(value: int, cap: int) -> str:
    """A count the database stopped at cap + 1 (so that its cost stays bounded): '1,000+' beyond."""
    return f"{cap:,}+" if value > cap else f"{value:,}"


def trend(delta: int | None) -> Text:
    """▲ +12 / ▼ -3 / = : direction readable without colour."""
    if delta is None:
        return Text("", no_wrap=True, end="")
    if delta > 0:
        return Text(f"▲{delta:+,}", style="green", no_wrap=True, end="")
    if delta < 0:
        return Text(f"▼{delta:,}", style="red", no_wrap=True, end="")
    return Text("=", style="dim", no_wrap=True, end="")
