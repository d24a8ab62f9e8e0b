"""Telegram's markup (Markdown, MarkdownV2, HTML) checked the way Telegram's server checks it.

A broadcast whose markup Telegram refuses fails in every group at once, so the admin API, the CLI,
the composer and the sender check it here first. The parsers are ports of TDLib's `parse_markdown`,
`parse_markdown_v2` and `parse_html` (tdlib/td td/telegram/MessageEntity.cpp, the version the Bot API
server tdlib/telegram-bot-api builds with): same reserved characters, same error texts, same UTF-8 byte
offsets. They report errors and the visible text only; entities are not needed here. Lengths count
UTF-16 code units of the text after parsing, as Telegram does.

The Bot API simulator has its own, independent parsers (`telegram_sim.markdown`); a differential test
runs both on the same inputs, so a mistake in one shows up as a disagreement rather than hiding in both.
"""

from __future__ import annotations

from ._common import MarkupError
from .html import parse_html
from .markdown import parse_markdown
from .markdown_v2 import parse_markdown_v2

__all__ = [
    "PARSE_MODES",
    "MarkupError",
    "check_markup",
    "normalise_parse_mode",
    "parsed_text",
    "utf16_length",
    "visible_length",
]

PARSE_MODES = {"markdown": "Markdown", "markdownv2": "MarkdownV2", "html": "HTML"}


def normalise_parse_mode(value: str | None) -> str | None:
    """Telegram's spelling of a parse mode given in any case; None for absent/empty. ValueError if unknown."""
    if value is None or value.strip() == "":
        return None
    try:
        return PARSE_MODES[value.strip().lower()]
    except KeyError:
        raise ValueError("unsupported parse_mode (use Markdown, MarkdownV2 or HTML)") from None


def parsed_text(text: str, parse_mode: str | None) -> str:
    """The text Telegram would show (markup removed); MarkupError with Telegram's description if refused.

    ValueError for an unknown parse mode, UnicodeEncodeError for text that is not valid UTF-8.
    """
    mode = normalise_parse_mode(parse_mode)
    raw = text.encode("utf-8")
    if mode == "Markdown":
        return parse_markdown(raw).decode("utf-8", "replace")
    if mode == "MarkdownV2":
        return parse_markdown_v2(raw).decode("utf-8", "replace")
    if mode == "HTML":
        return parse_html(raw)
    return text


def utf16_length(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji outside the BMP counts 2)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def check_markup(text: str, parse_mode: str | None) -> str | None:
    """Telegram's error for `text` under `parse_mode` ("can't parse entities: ..."), or None if fine."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "text must be valid UTF-8 (it contains an unpaired surrogate)"
    try:
        parsed_text(text, parse_mode)
    except MarkupError as exc:
        return f"can't parse entities: {exc}"
    except ValueError as exc:
        return str(exc)
    return None


# What Telegram's server drops or blanks in a message before storing it: `clean_input_string()` in
# tdlib/td td/telegram/misc.cpp turns control characters into spaces and drops carriage returns,
# U+2028..U+202E and the combining vertical lines U+030A, U+0333 and U+033F.
_CLEANED = str.maketrans(
    {code: " " for code in range(0x20) if code not in (0x0A, 0x0D)}
    | {code: None for code in (0x0D, *range(0x2028, 0x202F), 0x030A, 0x0333, 0x033F)}
)


def visible_length(text: str, parse_mode: str | None) -> int:
    """UTF-16 length of what Telegram would store: markup removed, cleaned, spaces and line breaks
    trimmed at both ends (`fix_formatted_text()` in tdlib/td td/telegram/MessageEntity.cpp; it keeps
    leading spaces inside an entity, which this does not know of). For markup that does not parse, the
    length of the raw text (the TUI shows the markup error separately)."""
    try:
        shown = parsed_text(text, parse_mode)
    except (MarkupError, ValueError, UnicodeEncodeError):
        shown = text
    return utf16_length(shown.translate(_CLEANED).strip(" \n"))
