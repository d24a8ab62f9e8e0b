"""MarkdownV2 as Telegram parses it: nesting, block quotes, and every reserved character escaped.

A port of `parse_markdown_v2()` in tdlib/td td/telegram/MessageEntity.cpp: same reserved characters,
same error texts, same UTF-8 byte offsets in them. `![text](url)` takes a custom emoji or a date
(tg://emoji?id=N, tg://time?unix=N&format=F), as in the TDLib version the Bot API server builds with.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._common import MarkupError, check_date_format, is_exact_integer, is_space, tg_link_parameters, utf16_units


def _reserved(c: int) -> str:
    return f"Character '{chr(c)}' is reserved and must be escaped with the preceding '\\'"


_V2_TYPES_END = {
    "Bold": lambda c, n: c == ord("*"),
    "Italic": lambda c, n: c == ord("_") and n != ord("_"),
    "Code": lambda c, n: c == ord("`"),
    "TextUrl": lambda c, n: c == ord("]"),
    "Underline": lambda c, n: c == ord("_") and n == ord("_"),
    "Strikethrough": lambda c, n: c == ord("~"),
    "Spoiler": lambda c, n: c == ord("|") and n == ord("|"),
    "CustomEmoji": lambda c, n: c == ord("]"),
    "BlockQuote": lambda c, n: False,
}


@dataclass
class _Open:
    type: str
    entity_offset: int  # UTF-16 offset in the result
    byte_offset: int  # where it starts in the input (for error messages)
    begin_pos: int  # where it starts in the result bytes


def parse_markdown_v2(text: bytes) -> bytes:
    """MarkdownV2: every one of _*[]()~`>#+-=|{}.! must be escaped outside entities; nesting allowed;
    inside code/pre only ` and \\ are special; '>' at a line start opens a block quote."""
    size = len(text)

    def at(k: int) -> int:
        return text[k] if k < size else 0

    out = bytearray()
    utf16 = 0
    nested: list[_Open] = []
    have_blockquote = False
    can_start_blockquote = True
    i = 0
    while i < size:
        c = text[i]
        if c == 0x5C and 0 < at(i + 1) <= 126:
            i += 1
            utf16 += 1
            out.append(text[i])
            if text[i] != 0x0D:
                can_start_blockquote = text[i] == 0x0A
            i += 1
            continue
        reserved = b"_*[]()~`>#+-=|{}.!\n"
        if nested and nested[-1].type in ("Code", "Pre", "PreCode"):
            reserved = b"`"
        if c not in reserved:
            units = utf16_units(c)
            if units:
                utf16 += units
                if c != 0x0D:
                    can_start_blockquote = False
            out.append(c)
            i += 1
            continue

        if not nested:
            is_end = False
        elif have_blockquote and c == 0x0A and (i + 1 == size or text[i + 1] != ord(">")):
            is_end = True
        else:
            top = nested[-1].type
            if top in ("Pre", "PreCode"):
                is_end = c == ord("`") and at(i + 1) == ord("`") and at(i + 2) == ord("`")
            else:
                is_end = _V2_TYPES_END[top](c, at(i + 1))

        if not is_end:
            byte_offset = i
            kind: str | None
            if c == ord("_"):
                if at(i + 1) == ord("_"):
                    kind = "Underline"
                    i += 1
                else:
                    kind = "Italic"
            elif c == ord("*"):
                kind = "Bold"
            elif c == ord("~"):
                kind = "Strikethrough"
            elif c == ord("|"):
                if at(i + 1) != ord("|"):
                    raise MarkupError(_reserved(c))
                i += 1
                kind = "Spoiler"
            elif c == ord("["):
                kind = "TextUrl"
            elif c == ord("`"):
                if at(i + 1) == ord("`") and at(i + 2) == ord("`"):
                    i += 3
                    kind = "Pre"
                    language_end = i
                    while not is_space(at(language_end)) and at(language_end) != ord("`"):
                        language_end += 1
                    if i != language_end and language_end < size and at(language_end) != ord("`"):
                        kind = "PreCode"
                        i = language_end
                    if at(i) in (0x0A, 0x0D):
                        i += 2 if at(i + 1) in (0x0A, 0x0D) and at(i) != at(i + 1) else 1
                    i -= 1
                else:
                    kind = "Code"
            elif c == ord("!"):
                if at(i + 1) != ord("["):
                    raise MarkupError(_reserved(c))
                i += 1
                kind = "CustomEmoji"
            elif c == 0x0A:
                utf16 += 1
                out.append(0x0A)
                can_start_blockquote = True
                kind = None
            elif c == ord(">"):
                if not can_start_blockquote:
                    raise MarkupError(_reserved(c))
                if have_blockquote:
                    kind = None
                else:
                    kind = "BlockQuote"
                    have_blockquote = True
            else:
                raise MarkupError(_reserved(c))
            if kind is not None:
                nested.append(_Open(kind, utf16, byte_offset, len(out)))
            i += 1
            continue

        # end of an entity
        top_open = nested[-1]
        kind = top_open.type
        if c == 0x0A and kind != "BlockQuote":
            spoiler_at_line_end = kind == "Spoiler" and (
                top_open.byte_offset == i - 2 or (top_open.byte_offset == i - 3 and len(out) != 0 and out[-1] == 0x0D)
            )
            if not spoiler_at_line_end:
                raise MarkupError(f"Can't find end of {kind} entity at byte offset {top_open.byte_offset}")
            nested.pop()
            top_open = nested[-1]
            if top_open.type != "BlockQuote":
                raise MarkupError(f"Can't find end of {top_open.type} entity at byte offset {top_open.byte_offset}")
            kind = "BlockQuote"
        if kind in ("Underline", "Spoiler"):
            i += 1
        elif kind in ("Pre", "PreCode"):
            i += 2
        elif kind in ("TextUrl", "CustomEmoji"):
            if at(i + 1) == ord("("):
                i += 2
                url_begin = i
                url = bytearray()
                while i < size and text[i] != ord(")"):
                    if text[i] == 0x5C and 0 < at(i + 1) <= 126:
                        url.append(text[i + 1])
                        i += 2
                        continue
                    url.append(text[i])
                    i += 1
                if at(i) != ord(")"):
                    raise MarkupError(f"Can't find end of a URL at byte offset {url_begin}")
                if kind == "CustomEmoji":
                    _check_emoji_or_time_url(bytes(url))
            elif kind == "CustomEmoji":
                raise MarkupError("The entity must contain a tg://emoji or tg://time URL")
        elif kind == "BlockQuote":
            have_blockquote = False
            out.append(text[i])
            can_start_blockquote = True
            utf16 += 1
        nested.pop()
        i += 1

    if have_blockquote:
        if nested and nested[-1].type == "Spoiler" and nested[-1].byte_offset == size - 2:
            nested.pop()
        if nested and nested[-1].type == "BlockQuote":
            nested.pop()
    if nested:
        raise MarkupError(f"Can't find end of {nested[-1].type} entity at byte offset {nested[-1].byte_offset}")
    return bytes(out)


def _check_emoji_or_time_url(url: bytes) -> None:
    """A `![text](url)` entity needs a tg://emoji?id=N or a tg://time?unix=N[&format=F] URL."""
    emoji = tg_link_parameters(url, b"emoji")
    for key, value in emoji or []:
        if key == b"id":
            if is_exact_integer(value, 64) and value != b"0":
                return
            break
    time = tg_link_parameters(url, b"time")
    if time is not None:
        unix = b""
        date_format = b""
        for key, value in time:
            if key == b"unix":
                if not is_exact_integer(value, 32) or value.startswith((b"-", b"0")):
                    raise MarkupError("Invalid tg://emoji or tg://time URL specified")
                unix = value
            if key == b"format":
                date_format = value
        if unix:
            check_date_format(date_format)
            return
    raise MarkupError("Invalid tg://emoji or tg://time URL specified")
