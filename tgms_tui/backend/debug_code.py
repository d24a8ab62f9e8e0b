"""Debug codes: the short text every broadcast copy ends with, so a message seen in a group can be
traced to its `sent_messages` row (the code is unique there).

Everything that composes or checks a broadcast (the sender, the admin API, the CLI, the TUI composer)
uses these rules, so "too long with the debug code appended" means the same everywhere: `refusal` is
the one check, run at submit with the longest code the broadcast can get (`longest`) and by the sender
with the longest code it actually gave.
"""

from __future__ import annotations

import html

from .markup import parsed_text as shown_text  # what Telegram shows for valid markup
from .message_validation import CAPTION_LIMIT, TEXT_LIMIT, ValidationError, check_markup, visible_length


def make(broadcast_id: int, n: int) -> str:
    """The code of the `n`th group (1-based) of a broadcast: [A-Za-z0-9] only, unique per row."""
    return f"B{broadcast_id}G{n}"


def sql_make(broadcast_id: str, n: str) -> str:
    """`make` as a SQL expression over two SQL expressions, for a statement that numbers its rows
    itself (a broadcast's start sends 100,000 ids, not 100,000 codes as well)."""
    return f"('B' || ({broadcast_id})::bigint || 'G' || ({n})::bigint)"


def suffix(code: str, parse_mode: str | None) -> str:
    """The debug code as plain text in `parse_mode`. Codes are [A-Za-z0-9] (see `make`), which no
    parse mode treats as markup; escaping anyway keeps this safe if the format ever changes."""
    if parse_mode == "MarkdownV2":
        return "".join("\\" + c if c in "_*[]()~`>#+-=|{}.!\\" else c for c in code)
    if parse_mode == "HTML":
        return html.escape(code, quote=False)
    if parse_mode == "Markdown":
        return "".join(c for c in code if c not in "_*`[]()\\")
    return code


def appended(body: str | None, code: str, parse_mode: str | None) -> str:
    """`body` with the debug code on its own paragraph after it: outside every entity of a valid text."""
    if not body:
        return suffix(code, parse_mode)
    return f"{body}\n\n{suffix(code, parse_mode)}"


def longest(broadcast_id: int, groups: int) -> str:
    """The longest code a broadcast to at most `groups` groups gets (the last group's)."""
    return make(broadcast_id, max(1, groups))


def refusal(
    text: str | None, photo_url: str | None, caption: str | None, parse_mode: str | None, code: str
) -> ValidationError | None:
    """What Telegram would refuse once `code` is appended to this broadcast's text (or caption), as a
    ValidationError naming the field; None when every copy up to this code goes through."""
    field = "caption" if photo_url is not None else "text"
    body = caption if photo_url is not None else text
    message = _problem(body, code, parse_mode, caption=photo_url is not None)
    return None if message is None else ValidationError(field, message)


def problem(body: str | None, code: str, parse_mode: str | None, *, caption: bool) -> str | None:
    """Why Telegram would reject `body` + `code` (markup, length), prefixed with the field, or None."""
    message = _problem(body, code, parse_mode, caption=caption)
    return None if message is None else f"{'caption' if caption else 'text'}: {message}"


def _problem(body: str | None, code: str, parse_mode: str | None, *, caption: bool) -> str | None:
    text = appended(body, code, parse_mode)
    error = check_markup(text, parse_mode)
    if error is not None:
        return error
    if not shown_text(text, parse_mode).rstrip().endswith(code):
        # e.g. legacy Markdown ending in "[link](" reads the rest of the text, the code too, as a URL.
        return "the debug code would not be visible at its end (unfinished markup at the end?)"
    limit = CAPTION_LIMIT if caption else TEXT_LIMIT
    length = visible_length(text, parse_mode)
    if length > limit:
        kind = "message caption" if caption else "message"
        return f"{kind} is too long with the debug code appended ({length} characters with {code}, limit {limit})"
    return None
