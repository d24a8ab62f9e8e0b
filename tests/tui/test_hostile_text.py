"""Text from Telegram and users is shown literally, on every screen: never markup, never a terminal
control sequence, never reordered by bidi marks, never a broken layout.

Any admin of a managed group can set its title, any user picks a username, and errors quote both. As
Rich/Textual markup a title `Evil [/] group` ends the app (MarkupError) and `[@click=app.quit]x[/]`
becomes a clickable action; an ESC sequence would reach the terminal; an RTL override would reorder what
the operator reads. The app must stay up and show each of them as the characters they are.
"""

from __future__ import annotations

from tgms_tui.widgets import format as fmt

from .hostile import walk_every_screen


def test_plain_makes_hostile_text_visible_and_inert() -> None:
    assert fmt.plain("Evil [/] group") == "Evil [/] group"
    assert fmt.plain("a\x1b[31mb\x9bc") == "a␛[31mb\\x9bc"
    assert fmt.plain("x\u202ey\u2066z\u2069") == "x<U+202E>y<U+2066>z<U+2069>"
    assert fmt.plain("one\ntwo\u2028three\tfour") == "one two three four"
    assert fmt.plain("one\ntwo", multiline=True) == "one\ntwo"
    assert fmt.plain("x" * 500, 20) == "x" * 19 + "…"
    cell = fmt.text("[@click=app.quit]x[/]")
    assert cell.plain == "[@click=app.quit]x[/]" and not cell.spans


async def test_every_screen_shows_hostile_text_literally(db_url: str) -> None:
    walk = await walk_every_screen(db_url)
    assert walk.screens >= {"PhaseScreen", "ConfirmScreen", "GroupDetailScreen", "JobDetailScreen"}
