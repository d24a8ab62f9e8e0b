"""A terminal preview of a Telegram message: bold, italic, underline, strike, code, links, spoilers.

Only for the operator's eyes: whether Telegram accepts the markup is decided by
`backend.message_validation.check_markup` (TDLib's rules); when that reports an error the composer
shows the raw text and the error instead of this rendering. So best effort is enough here.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from rich.text import Text

STYLES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strike",
    "strike": "strike",
    "del": "strike",
    "code": "bold cyan",
    "pre": "cyan",
    "a": "underline blue",
    "tg-spoiler": "reverse",
    "span": "reverse",
    "blockquote": "italic dim",
}


class _HtmlPreview(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out = Text()
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack.append(STYLES.get(tag, ""))

    def handle_endtag(self, tag: str) -> None:
        if self.stack:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.out.append(data, style=" ".join(s for s in self.stack if s))


def _html(text: str) -> Text:
    parser = _HtmlPreview()
    parser.feed(text)
    parser.close()
    return parser.out


# Longest delimiters first: ``` before `, __ before _, || before nothing.
_MD_V2 = re.compile(
    r"```(?:[^\n`]*\n)?(?P<pre>.*?)```|`(?P<code>[^`]*)`|\*(?P<bold>[^*]+)\*|__(?P<under>[^_]+)__"
    r"|_(?P<italic>[^_]+)_|~(?P<strike>[^~]+)~|\|\|(?P<spoiler>.+?)\|\||\[(?P<link>[^\]]+)\]\([^)]*\)",
    re.S,
)
_MD_V1 = re.compile(
    r"```(?:[^\n`]*\n)?(?P<pre>.*?)```|`(?P<code>[^`]*)`|\*(?P<bold>[^*]+)\*|_(?P<italic>[^_]+)_"
    r"|\[(?P<link>[^\]]+)\]\([^)]*\)",
    re.S,
)
_GROUP_STYLE = {
    "pre": "cyan",
    "code": "bold cyan",
    "bold": "bold",
    "under": "underline",
    "italic": "italic",
    "strike": "strike",
    "spoiler": "reverse",
    "link": "underline blue",
}


def _markdown(text: str, pattern: re.Pattern[str], v2: bool) -> Text:
    out = Text()
    pos = 0
    # In MarkdownV2 an escaped delimiter is literal: hide escapes from the pattern, restore them after.
    source = re.sub(r"\\(.)", lambda m: "\x00" + str(ord(m.group(1))) + "\x01", text) if v2 else text

    def literal(s: str) -> str:
        if v2:
            return re.sub(r"\x00(\d+)\x01", lambda m: chr(int(m.group(1))), s)
        return re.sub(r"\\([_*`\[])", r"\1", s)  # legacy Markdown escapes only these

    for match in pattern.finditer(source):
        out.append(literal(source[pos : match.start()]))
        name = match.lastgroup or ""
        out.append(literal(match.group(name) or ""), style=_GROUP_STYLE.get(name, ""))
        pos = match.end()
    out.append(literal(source[pos:]))
    return out


def render_preview(text: str, parse_mode: str | None) -> Text:
    """`text` as Telegram would roughly display it under `parse_mode` (None = plain)."""
    if parse_mode == "HTML":
        return _html(text)
    if parse_mode == "MarkdownV2":
        return _markdown(text, _MD_V2, v2=True)
    if parse_mode == "Markdown":
        return _markdown(text, _MD_V1, v2=False)
    return Text(text)
