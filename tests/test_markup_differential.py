"""The validator's markup parsers and the simulator's agree on every input (a differential test).

`tgms_tui.backend.markup` (what TGMS checks before sending) and `telegram_sim.markdown` (the oracle
standing in for Telegram) are written independently on purpose, so one mistake cannot hide in both.
This test feeds both the same markup-like text, per parse mode, and requires the same verdict, the
same error text and, when accepted, the same visible text and length. Where they disagreed, the side
that differed from TDLib (tdlib/td td/telegram/MessageEntity.cpp, which the Bot API server runs) was
fixed.

The CI profile is derandomized (same inputs every run, no example database) and sized to run in
seconds; `TGMS_DIFFERENTIAL_EXAMPLES=200000` runs a larger search.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telegram_sim.markdown import EntityParseError, parse, strip_text, utf16_len
from tgms_tui.backend.markup import check_markup, parsed_text, visible_length

EXAMPLES = int(os.environ.get("TGMS_DIFFERENTIAL_EXAMPLES", "2000"))
PROFILE = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_TEXT = ["a", "b", "Z", "0", "7", " ", "  ", "\n", "\r", "\r\n", "\t", "\x0b", "\x0c", "\x00", "é", "я", "€"]
_EMOJI = ["😀", "🏟", "👍🏽", "\u200d", "\U0001f1fa\U0001f1e6"]  # surrogate pairs in UTF-16, 4 bytes in UTF-8
_LINKS = ["http://x.org", "https://t.me/a?b=1", "tg://user?id=42", "x.org", "not a url", "", "tg://emoji?id=5"]

MARKDOWN_TOKENS = [
    *"_*`[]()\\",
    "```",
    "```python\n",
    "```\n",
    "\\_",
    "\\*",
    "\\`",
    "\\[",
    "\\\\",
    *(f"]({url})" for url in _LINKS),
    "[t](tg://user?id=5)",
]

MARKDOWN_V2_TOKENS = [
    *"_*[]()~`>#+-=|{}.!",
    "__",
    "||",
    "```",
    "```py\n",
    "```\r\n",
    ">",
    "\n>",
    "**>",
    ">>",
    "||\n",
    "\\",
    *(f"\\{c}" for c in "_*[]()~`>#+-=|{}.!\\"),
    "\\\n",
    "\\a",
    *(f"]({url})" for url in _LINKS),
    "](http://a\\)b)",
    "![x](tg://emoji?id=5)",
    "![x](tg://emoji?id=0)",
    "![x](tg://emoji?id=-7)",
    "![x](tg://emoji?id=05)",
    "![x](tg://emoji)",
    "![x](tg:emoji?id=1#x)",
    "![x](TG://EMOJI/?id=9)",
    "![x](tg://emojis?id=1)",
    "![x](http://x.org)",
    "![x](tg://time?unix=1)",
    "![x](tg://time?unix=1&format=wdT)",
    "![x](tg://time?unix=1&format=r)",
    "![x](tg://time?unix=1&format=q)",
    "![x](tg://time?unix=0)",
    "![x](tg://time?format=t)",
    "![x]",
    "![](tg://emoji?id=5)",
]

HTML_TOKENS = [
    *(f"<{tag}>" for tag in ("b", "i", "u", "s", "em", "strong", "ins", "del", "strike", "tg-spoiler", "pre", "code")),
    *(f"</{tag}>" for tag in ("b", "i", "u", "s", "em", "tg-spoiler", "pre", "code", "a", "span", "blockquote")),
    "<B>",
    "</B >",
    "</>",
    "</",
    "<",
    ">",
    "&",
    "<x>",
    "<b",
    "<b ",
    "<br/>",
    "<a>",
    *(f'<a href="{url}">' for url in _LINKS),
    "<a href=x.org>",
    "<a href='tg://user?id=1'>",
    "<a href>",
    "<a href=>",
    "<a =x>",
    "<a href=a,b>",
    '<a href="x&amp;y">',
    '<a href="unterminated>',
    "<span>",
    '<span class="tg-spoiler">',
    "<span class=tg-spoiler>",
    '<span class="x">',
    '<code class="language-python">',
    "<blockquote>",
    "<blockquote expandable>",
    "<blockquote expandable=1>",
    '<tg-emoji emoji-id="5">',
    '<tg-emoji emoji-id="0">',
    "<tg-emoji emoji-id=x>",
    "<tg-emoji>",
    "</tg-emoji>",
    '<tg-time unix="1">',
    '<tg-time unix="1" format="wdT">',
    '<tg-time unix="1" format="r">',
    '<tg-time unix="1" format="q">',
    '<tg-time unix="0" format="q">',
    "<tg-time>",
    "</tg-time>",
    "<i/>",
    "<i a=b/>",
    '<i a="b"/>',
    "<i a b>",
    '<i"a">',
    "&lt;",
    "&gt;",
    "&amp;",
    "&quot;",
    "&quot",
    "&nbsp;",
    "&LT;",
    "&#60;",
    "&#x3c;",
    "&#X3c;",
    "&#x1F600;",
    "&#128512;",
    "&#0;",
    "&#55357;",
    "&#xDE00;",
    "&#1114111;",
    "&#99999999;",
    "&#",
    "&#x",
    "=",
    '"',
    "'",
    "/",
]

_PLAIN = st.sampled_from(_TEXT + _EMOJI)


def _markup(tokens: list[str]) -> st.SearchStrategy[str]:
    """Markup-like text: the mode's special tokens mixed with letters, spaces, newlines and emoji, and
    sometimes a long plain run so that lengths around Telegram's 4096/1024 limits come up."""
    piece = st.one_of(st.sampled_from(tokens), st.sampled_from(tokens), _PLAIN)
    body = st.lists(piece, max_size=24).map("".join)
    padding = st.sampled_from([0, 0, 0, 0, 1, 1023, 1024, 2048, 4095, 4096, 4097])
    filler = st.sampled_from(["a", "😀", "é", " "])
    return st.tuples(body, padding, filler, st.booleans()).map(
        lambda t: t[0] if not t[1] else (t[2] * t[1] + t[0] if t[3] else t[0] + t[2] * t[1])
    )


def simulator_verdict(text: str, mode: str) -> tuple[str | None, str | None, int | None]:
    """(error as the Bot API words it after "Bad Request: ", visible text, visible UTF-16 length)."""
    try:
        formatted = parse(text, mode)
    except EntityParseError as exc:
        return f"can't parse entities: {exc}", None, None
    return None, formatted.text, utf16_len(strip_text(formatted).text)


def validator_verdict(text: str, mode: str) -> tuple[str | None, str | None, int | None]:
    error = check_markup(text, mode)
    if error is not None:
        return error, None, None
    return None, parsed_text(text, mode), visible_length(text, mode)


def disagreement(text: str, mode: str) -> str | None:
    """None when both sides agree, else a one-line description of how they differ."""
    sim = simulator_verdict(text, mode)
    ours = validator_verdict(text, mode)
    if sim == ours:
        return None
    return f"{mode} {text!r}: simulator {sim!r} != validator {ours!r}"


@PROFILE
@given(text=_markup(MARKDOWN_TOKENS))
def test_markdown_parsers_agree(text: str) -> None:
    assert disagreement(text, "Markdown") is None


@PROFILE
@given(text=_markup(MARKDOWN_V2_TOKENS))
def test_markdown_v2_parsers_agree(text: str) -> None:
    assert disagreement(text, "MarkdownV2") is None


@PROFILE
@given(text=_markup(HTML_TOKENS))
def test_html_parsers_agree(text: str) -> None:
    assert disagreement(text, "HTML") is None
