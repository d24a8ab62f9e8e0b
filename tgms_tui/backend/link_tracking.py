"""Tracked links: which URLs of a message are rewritten to `<public base URL>/r/<token>`, and how.

Every http(s) URL button is tracked (a `tg://` button opens Telegram itself and stays as written).
URLs in the text (or caption) are tracked when the parse mode leaves a URL as written: plain text
(Telegram links bare URLs) and HTML (`<a href="...">` and bare URLs). In Markdown and MarkdownV2 a
URL's escaping depends on where it stands, so their text links are left as written; put the links
you want counted in buttons there.

A token is 128 random bits in hex: unguessable, and only [0-9a-f], which no parse mode treats as
markup. Pure functions: the admin API, the CLI, the composer and the sender all render the same.
"""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

TOKEN_BYTES = 16
TOKEN_RE = re.compile(r"^[0-9a-f]{32}$")
REDIRECT_PATH = "/r/"
# A URL as written in plain text or HTML: up to whitespace, a quote or a tag; trailing punctuation
# belongs to the sentence, not to the URL.
_URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
_TRAILING = ".,;:!?)]}"

Buttons = list[list[dict[str, str]]]
ButtonRows = Sequence[Sequence[Mapping[str, Any]]]


def new_token() -> str:
    return secrets.token_hex(TOKEN_BYTES)


def sample_token() -> str:
    """A token of the real length, for checking a message's length before tokens exist."""
    return "0" * (2 * TOKEN_BYTES)


def tracked_url(base: str, token: str) -> str:
    return f"{base.rstrip('/')}{REDIRECT_PATH}{token}"


def tracks_text(parse_mode: str | None) -> bool:
    return parse_mode in (None, "HTML")


def _spans(body: str, parse_mode: str | None) -> list[tuple[int, int, str]]:
    """(start, end, url) of each trackable URL written in `body`."""
    if not tracks_text(parse_mode):
        return []
    spans = []
    for match in _URL.finditer(body):
        written = match.group(0)
        while written and written[-1] in _TRAILING:
            written = written[:-1]
        url = html.unescape(written) if parse_mode == "HTML" else written
        if len(written) > len("https://"):
            spans.append((match.start(), match.start() + len(written), url))
    return spans


def urls_in(body: str | None, parse_mode: str | None, buttons: ButtonRows | None) -> list[str]:
    """The distinct URLs a tracked message rewrites, in order: the text's, then the buttons'."""
    seen: dict[str, None] = {}
    for _start, _end, url in _spans(body or "", parse_mode):
        seen[url] = None
    for row in buttons or []:
        for button in row:
            target = button.get("url")
            if isinstance(target, str) and target.lower().startswith(("http://", "https://")):
                seen[target] = None
    return list(seen)


def render(
    body: str | None,
    parse_mode: str | None,
    buttons: ButtonRows | None,
    tokens: Mapping[str, str],
    base: str | None,
) -> tuple[str | None, Buttons | None]:
    """`body` and `buttons` with each URL that has a token replaced by its tracked URL."""
    if base is None or not tokens:
        return body, [[dict(b) for b in row] for row in buttons] if buttons else None
    out = body
    if body:
        parts = []
        last = 0
        for start, end, url in _spans(body, parse_mode):
            found = tokens.get(url)
            if found is None:
                continue
            parts.append(body[last:start])
            parts.append(tracked_url(base, found))
            last = end
        parts.append(body[last:])
        out = "".join(parts)
    rendered: Buttons | None = None
    if buttons:
        rendered = []
        for row in buttons:
            new_row = []
            for button in row:
                copy = {str(k): str(v) for k, v in button.items()}
                token = tokens.get(copy.get("url", ""))
                if token is not None:
                    copy["url"] = tracked_url(base, token)
                new_row.append(copy)
            rendered.append(new_row)
    return out, rendered


def markup(buttons: Buttons | None) -> dict[str, Any] | None:
    """The reply_markup of a message with these URL buttons (None: no buttons)."""
    if not buttons:
        return None
    return {"inline_keyboard": [[{"text": b["text"], "url": b["url"]} for b in row] for row in buttons]}
