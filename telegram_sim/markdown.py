"""Telegram's formatting parsers: legacy Markdown, MarkdownV2 and HTML, with TDLib's error texts.

Behaviour follows TDLib `td/telegram/MessageEntity.cpp` (`parse_markdown`, `parse_markdown_v2`,
`parse_html`): the parsers walk the UTF-8 bytes, so error positions are *byte* offsets in the text
the client sent, while entity offsets/lengths are UTF-16 code units of the parsed text, as the Bot
API reports them. Lengths limits are checked by the caller on `utf16_len()` of the parsed text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

Entity = dict[str, Any]

_SPACES = frozenset(b" \t\r\n\0\v")
_MD_V2_RESERVED = frozenset(b"_*[]()~`>#+-=|{}.!\n")


class EntityParseError(Exception):
    """The text cannot be parsed; `str(exc)` is TDLib's message (the API prefixes it)."""


@dataclass
class FormattedText:
    text: str
    entities: list[Entity]


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def parse(text: str, parse_mode: str | None) -> FormattedText:
    """Parse `text` in `parse_mode` (case-insensitive; empty/None/'none' = plain text).

    Raises `UnsupportedParseMode` or `EntityParseError`.
    """
    mode = (parse_mode or "").strip().lower()
    if mode in ("", "none"):
        return FormattedText(text, [])
    if mode == "markdown":
        return _parse_markdown(text)
    if mode == "markdownv2":
        return _parse_markdown_v2(text)
    if mode == "html":
        return _parse_html(text)
    raise UnsupportedParseMode(mode)


class UnsupportedParseMode(Exception):
    pass


def strip_text(formatted: FormattedText) -> FormattedText:
    """The text as Telegram stores it, entities moved and clipped to match.

    As `fix_formatted_text()` in tdlib/td td/telegram/MessageEntity.cpp (with `clean_input_string()`
    in td/telegram/misc.cpp): control characters become spaces, carriage returns, U+2028..U+202E and
    the combining vertical lines U+030A, U+0333, U+033F are dropped, then spaces and line breaks are
    trimmed at both ends. (TDLib keeps leading spaces that an entity starts before; this trims them.)
    """
    kept: list[str] = []
    new_offset = [0]  # UTF-16 offset in the result of every UTF-16 offset of the input
    for ch in formatted.text:
        units = 2 if ord(ch) > 0xFFFF else 1
        if ch == "\r" or 0x2028 <= ord(ch) <= 0x202E or ch in "\u030a\u0333\u033f":
            new_offset += [new_offset[-1]] * units
            continue
        kept.append(" " if ord(ch) < 0x20 and ch != "\n" else ch)
        new_offset += [new_offset[-1] + k for k in range(1, units + 1)]
    cleaned = "".join(kept)
    stripped = cleaned.strip(" \n")
    if stripped == formatted.text:
        return formatted
    lead = len(cleaned) - len(cleaned.lstrip(" \n"))  # spaces and line breaks: one UTF-16 unit each
    new_len = utf16_len(stripped)
    entities: list[Entity] = []
    for entity in formatted.entities:
        start = max(new_offset[entity["offset"]] - lead, 0)
        end = min(new_offset[entity["offset"] + entity["length"]] - lead, new_len)
        if end > start:
            entities.append({**entity, "offset": start, "length": end - start})
    return FormattedText(stripped, entities)


# --- helpers -------------------------------------------------------------------------------------


class _Bytes:
    """UTF-8 bytes with C-string semantics: reading past the end yields 0."""

    def __init__(self, text: str) -> None:
        self.data = text.encode("utf-8")
        self.size = len(self.data)

    def __getitem__(self, index: int) -> int:
        return self.data[index] if index < self.size else 0


def _u16_step(byte: int) -> int:
    """UTF-16 units contributed by a UTF-8 byte (0 for continuation bytes)."""
    if byte & 0xC0 == 0x80:
        return 0
    return 2 if byte >= 0xF0 else 1


def _entity(kind: str, offset: int, length: int, **extra: Any) -> Entity:
    return {"type": kind, "offset": offset, "length": length, **extra}


def _link_entity(offset: int, length: int, url: str) -> Entity | None:
    """text_mention for tg://user?id=N, text_link for a valid URL, None for an unusable URL."""
    user_id = _link_user_id(url)
    if user_id is not None:
        return _entity("text_mention", offset, length, user={"id": user_id, "is_bot": False, "first_name": ""})
    checked = _checked_link(url)
    if checked is None:
        return None
    return _entity("text_link", offset, length, url=checked)


def _link_user_id(url: str) -> int | None:
    parts = urlsplit(url.strip())
    if parts.scheme.lower() == "tg" and parts.netloc.lower() == "user":
        values = parse_qs(parts.query).get("id")
        if values and values[0].isdigit():
            return int(values[0])
    return None


_DOMAIN_RE = re.compile(r"^[A-Za-z0-9.-]+\.[A-Za-z]{2,}(:\d+)?([/?#].*)?$")


def _checked_link(url: str) -> str | None:
    url = url.strip()
    if not url or any(ch.isspace() for ch in url):
        return None
    scheme, sep, _rest = url.partition("://")
    if sep:
        scheme = scheme.lower()
        if scheme in ("http", "https", "tg", "ton", "ftp"):
            return url
        return None
    if url.lower().startswith(("tg:", "ton:")):
        return url
    if _DOMAIN_RE.match(url):
        return "http://" + url
    return None


def _sort(entities: list[Entity]) -> list[Entity]:
    return sorted(entities, key=lambda e: (e["offset"], -e["length"]))


# --- legacy Markdown -----------------------------------------------------------------------------


def _parse_markdown(text: str) -> FormattedText:
    src = _Bytes(text)
    out = bytearray()
    entities: list[Entity] = []
    u16 = 0
    i = 0
    markers = b"_*`["
    while i < src.size:
        c = src[i]
        if c == 0x5C and src[i + 1] in markers:  # "\" escapes only these, only outside entities
            i += 1
            out.append(src[i])
            u16 += 1
            i += 1
            continue
        if c not in markers:
            u16 += _u16_step(c)
            out.append(c)
            i += 1
            continue

        begin_pos = i
        end_char = ord("]") if c == ord("[") else c
        is_pre = False
        language = ""
        i += 1
        if c == ord("`") and src[i] == ord("`") and src[i + 1] == ord("`"):
            i += 2
            is_pre = True
            lang_end = i
            while src[lang_end] not in _SPACES and src[lang_end] != ord("`"):
                lang_end += 1
            if i != lang_end and lang_end < src.size and src[lang_end] != ord("`"):
                language = src.data[i:lang_end].decode("utf-8", "replace")
                i = lang_end
            i = _skip_one_newline(src, i)

        entity_offset = u16
        content_start = len(out)
        while i < src.size and (
            src[i] != end_char or (is_pre and not (src[i + 1] == ord("`") and src[i + 2] == ord("`")))
        ):
            u16 += _u16_step(src[i])
            out.append(src[i])
            i += 1
        if i == src.size:
            raise EntityParseError(f"Can't find end of the entity starting at byte offset {begin_pos}")

        if entity_offset != u16:
            length = u16 - entity_offset
            if c == ord("_"):
                entities.append(_entity("italic", entity_offset, length))
            elif c == ord("*"):
                entities.append(_entity("bold", entity_offset, length))
            elif c == ord("["):
                if src[i + 1] != ord("("):
                    url = out[content_start:].decode("utf-8", "replace")
                else:
                    i += 2
                    start = i
                    while i < src.size and src[i] != ord(")"):
                        i += 1
                    url = src.data[start:i].decode("utf-8", "replace")
                link = _link_entity(entity_offset, length, url)
                if link is not None:
                    entities.append(link)
            elif is_pre:
                if language:
                    entities.append(_entity("pre", entity_offset, length, language=language))
                else:
                    entities.append(_entity("pre", entity_offset, length))
            else:
                entities.append(_entity("code", entity_offset, length))
        if is_pre:
            i += 2
        i += 1
    return FormattedText(out.decode("utf-8", "replace"), entities)


def _skip_one_newline(src: _Bytes, i: int) -> int:
    if src[i] in (0x0A, 0x0D):
        if src[i + 1] in (0x0A, 0x0D) and src[i] != src[i + 1]:
            return i + 2
        return i + 1
    return i


# --- MarkdownV2 ----------------------------------------------------------------------------------

_V2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "pre_code": "PreCode",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
    "blockquote": "BlockQuote",
    "expandable_blockquote": "ExpandableBlockQuote",
}


@dataclass
class _Open:
    kind: str
    argument: str
    u16_offset: int
    byte_offset: int
    out_pos: int


def _reserved_error(ch: int) -> EntityParseError:
    return EntityParseError(f"Character '{chr(ch)}' is reserved and must be escaped with the preceding '\\'")


def _parse_markdown_v2(text: str) -> FormattedText:
    """Port of `parse_markdown_v2()` (tdlib/td td/telegram/MessageEntity.cpp), block quotes included:
    '>' opens one only where a line may start one, a '**>' quote closed by '||' at a line end (or at
    the end of the text) is expandable."""
    src = _Bytes(text)
    out = bytearray()
    entities: list[Entity] = []
    stack: list[_Open] = []
    u16 = 0
    have_blockquote = False
    can_start_blockquote = True
    i = 0
    while i < src.size:
        c = src[i]
        if c == 0x5C and 0 < src[i + 1] <= 126:
            i += 1
            u16 += 1
            out.append(src[i])
            if src[i] != 0x0D:
                can_start_blockquote = src[i] == 0x0A
            i += 1
            continue

        in_code = bool(stack) and stack[-1].kind in ("code", "pre", "pre_code")
        reserved = c == ord("`") if in_code else c in _MD_V2_RESERVED
        if not reserved:
            if (c & 0xC0) != 0x80:
                u16 += _u16_step(c)
                if c != 0x0D:
                    can_start_blockquote = False
            out.append(c)
            i += 1
            continue

        is_end = False
        if stack:
            top = stack[-1].kind
            if have_blockquote and c == 0x0A and (i + 1 == src.size or src[i + 1] != ord(">")):
                is_end = True
            elif top == "bold":
                is_end = c == ord("*")
            elif top == "italic":
                is_end = c == ord("_") and src[i + 1] != ord("_")
            elif top == "code":
                is_end = c == ord("`")
            elif top in ("pre", "pre_code"):
                is_end = c == ord("`") and src[i + 1] == ord("`") and src[i + 2] == ord("`")
            elif top in ("text_link", "custom_emoji"):
                is_end = c == ord("]")
            elif top == "underline":
                is_end = c == ord("_") and src[i + 1] == ord("_")
            elif top == "strikethrough":
                is_end = c == ord("~")
            elif top == "spoiler":
                is_end = c == ord("|") and src[i + 1] == ord("|")

        if not is_end:
            kind: str | None
            argument = ""
            byte_offset = i
            if c == ord("_"):
                if src[i + 1] == ord("_"):
                    kind = "underline"
                    i += 1
                else:
                    kind = "italic"
            elif c == ord("*"):
                kind = "bold"
            elif c == ord("~"):
                kind = "strikethrough"
            elif c == ord("|"):
                if src[i + 1] != ord("|"):
                    raise _reserved_error(c)
                i += 1
                kind = "spoiler"
            elif c == ord("["):
                kind = "text_link"
            elif c == ord("`"):
                if src[i + 1] == ord("`") and src[i + 2] == ord("`"):
                    i += 3
                    kind = "pre"
                    lang_end = i
                    while src[lang_end] not in _SPACES and src[lang_end] != ord("`"):
                        lang_end += 1
                    if i != lang_end and lang_end < src.size and src[lang_end] != ord("`"):
                        kind = "pre_code"
                        argument = src.data[i:lang_end].decode("utf-8", "replace")
                        i = lang_end
                    i = _skip_one_newline(src, i) - 1
                else:
                    kind = "code"
            elif c == ord("!"):
                if src[i + 1] != ord("["):
                    raise _reserved_error(c)
                i += 1
                kind = "custom_emoji"
            elif c == 0x0A:
                u16 += 1
                out.append(0x0A)
                can_start_blockquote = True
                kind = None
            elif c == ord(">"):
                if not can_start_blockquote:
                    raise _reserved_error(c)
                kind = None if have_blockquote else "blockquote"
                have_blockquote = True
            else:
                raise _reserved_error(c)
            if kind is not None:
                stack.append(_Open(kind, argument, u16, byte_offset, len(out)))
            i += 1
            continue

        # end of an entity
        top_open = stack[-1]
        kind = top_open.kind
        if c == 0x0A and kind != "blockquote":
            # "||" right before the line break of a quote: the quote is expandable
            closes_quote = kind == "spoiler" and (
                top_open.byte_offset == i - 2 or (top_open.byte_offset == i - 3 and len(out) != 0 and out[-1] == 0x0D)
            )
            if not closes_quote:
                raise EntityParseError(
                    f"Can't find end of {_V2_NAMES[kind]} entity at byte offset {top_open.byte_offset}"
                )
            stack.pop()
            top_open = stack[-1]
            if top_open.kind != "blockquote":
                raise EntityParseError(
                    f"Can't find end of {_V2_NAMES[top_open.kind]} entity at byte offset {top_open.byte_offset}"
                )
            kind = "expandable_blockquote"
        argument = top_open.argument
        skip = u16 == top_open.u16_offset
        link: Entity | None = None
        extra: dict[str, Any] = {}
        if kind in ("underline", "spoiler"):
            i += 1
        elif kind in ("pre", "pre_code"):
            i += 2
        elif kind in ("text_link", "custom_emoji"):
            if src[i + 1] != ord("("):
                if kind == "custom_emoji":
                    raise EntityParseError("The entity must contain a tg://emoji or tg://time URL")
                url = out[top_open.out_pos :].decode("utf-8", "replace")
            else:
                i += 2
                url_begin = i
                raw = bytearray()
                while i < src.size and src[i] != ord(")"):
                    if src[i] == 0x5C and 0 < src[i + 1] <= 126:
                        raw.append(src[i + 1])
                        i += 2
                        continue
                    raw.append(src[i])
                    i += 1
                if src[i] != ord(")"):
                    raise EntityParseError(f"Can't find end of a URL at byte offset {url_begin}")
                url = raw.decode("utf-8", "replace")
            if kind == "text_link":
                link = _link_entity(top_open.u16_offset, u16 - top_open.u16_offset, url)
                if link is None:
                    skip = True
            else:
                emoji_id = _emoji_id(url)
                if emoji_id is not None:
                    extra = {"custom_emoji_id": emoji_id}
                else:
                    date = _time_link(url)
                    if date is None:
                        raise EntityParseError("Invalid tg://emoji or tg://time URL specified")
                    kind = "date_time"
                    extra = date
        elif kind in ("blockquote", "expandable_blockquote"):
            have_blockquote = False
            out.append(src[i])
            can_start_blockquote = True
            u16 += 1
            skip = False

        if not skip:
            offset = top_open.u16_offset
            length = u16 - offset
            if link is not None:
                entities.append(link)
            elif kind == "pre_code":
                entities.append(_entity("pre", offset, length, language=argument))
            else:
                entities.append(_entity(kind, offset, length, **extra))
        stack.pop()
        i += 1

    if have_blockquote:
        kind = "blockquote"
        if stack and stack[-1].kind == "spoiler" and stack[-1].byte_offset == src.size - 2:
            stack.pop()
            kind = "expandable_blockquote"
        if stack and stack[-1].kind == "blockquote":
            top_open = stack.pop()
            if u16 != top_open.u16_offset:
                entities.append(_entity(kind, top_open.u16_offset, u16 - top_open.u16_offset))
    if stack:
        top_open = stack[-1]
        raise EntityParseError(
            f"Can't find end of {_V2_NAMES[top_open.kind]} entity at byte offset {top_open.byte_offset}"
        )
    return FormattedText(out.decode("utf-8", "replace"), _sort(entities))


def _tg_link_query(url: str, host: str) -> list[tuple[str, str]] | None:
    """The query of a tg://<host>?... link as (key, value) pairs, or None when it is not one
    (LinkManager::check_tg_url_host in tdlib/td td/telegram/LinkManager.cpp)."""
    lowered = url.lower()
    if not lowered.startswith("tg:"):
        return None
    rest = url[3:]
    if rest.startswith("//"):
        rest = rest[2:]
    if not rest.lower().startswith(host) or (len(rest) > len(host) and rest[len(host)] not in "/?#"):
        return None
    rest = rest[len(host) :]
    if rest.startswith("/"):
        rest = rest[1:]
    if not rest.startswith("?"):
        return None
    query = rest[1:].partition("#")[0]
    return [(p.partition("=")[0], p.partition("=")[2]) for p in query.split("&") if p]


def _exact_int(value: str, bits: int) -> int | None:
    """TDLib's to_integer_safe: the value only if it is written exactly as the integer prints."""
    if not re.fullmatch(r"-?(0|[1-9][0-9]*)", value) or value == "-0":
        return None
    number = int(value)
    return number if -(2 ** (bits - 1)) <= number < 2 ** (bits - 1) else None


def _emoji_id(url: str) -> str | None:
    """The custom emoji id of a tg://emoji?id=N link (LinkManager::get_link_custom_emoji_id), else None."""
    query = _tg_link_query(url, "emoji")
    for key, value in query or []:
        if key == "id":
            number = _exact_int(value, 64)
            return None if not number else str(number)
    return None


def _time_link(url: str) -> dict[str, Any] | None:
    """unix_time and date_time_format of a tg://time?unix=N&format=F link (LinkManager::
    get_link_date_format), None when it is not one; a bad format is an error of its own."""
    query = _tg_link_query(url, "time")
    if query is None:
        return None
    date = 0
    date_format = ""
    for key, value in query:
        if key == "unix":
            number = _exact_int(value, 32)
            if number is None or number <= 0:
                return None
            date = number
        if key == "format":
            date_format = value
    if date == 0:
        return None
    return {"unix_time": date, "date_time_format": _date_time_format(date_format)}


def _date_time_format(date_format: str) -> str:
    """The Bot API's spelling of a date format ("r", or w, d|D, t|T in that order), as
    get_date_flags() in td/telegram/MessageEntity.cpp and the Bot API's entity JSON make it."""
    if date_format in ("r", "R"):
        return "r"
    if any(ch not in "tTdDwW" for ch in date_format):
        raise EntityParseError("Invalid date format used")
    spelled = "w" if any(ch in "wW" for ch in date_format) else ""
    if "d" in date_format:
        spelled += "d"
    elif "D" in date_format:
        spelled += "D"
    if "t" in date_format:
        spelled += "t"
    elif "T" in date_format:
        spelled += "T"
    return spelled


# --- HTML ----------------------------------------------------------------------------------------

_HTML_TAGS = frozenset(
    {
        "a",
        "b",
        "strong",
        "i",
        "em",
        "s",
        "strike",
        "del",
        "u",
        "ins",
        "tg-spoiler",
        "tg-emoji",
        "tg-time",
        "span",
        "pre",
        "code",
        "blockquote",
    }
)
_HTML_KIND = {
    "i": "italic", "em": "italic", "b": "bold", "strong": "bold", "s": "strikethrough",
    "strike": "strikethrough", "del": "strikethrough", "u": "underline", "ins": "underline",
    "tg-spoiler": "spoiler", "span": "spoiler",
}  # fmt: skip


def _is_alpha(b: int) -> bool:
    return 0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A


def _is_digit(b: int) -> bool:
    return 0x30 <= b <= 0x39


def _decode_html_entity(src: _Bytes, pos: int) -> tuple[int, int]:
    """(code point or 0, position after the reference) for the '&' at `pos`."""
    end = pos + 1
    code = 0
    if src[pos + 1] == ord("#"):
        end += 1
        if src[pos + 2] == ord("x"):
            end += 1
            while chr(src[end]) in "0123456789abcdefABCDEF" and src[end]:
                code = code * 16 + int(chr(src[end]), 16)
                end += 1
        else:
            while _is_digit(src[end]):
                code = code * 10 + src[end] - 0x30
                end += 1
        if code == 0 or code >= 0x10FFFF or end - pos >= 10:
            return 0, pos
    else:
        while _is_alpha(src[end]):
            end += 1
        name = src.data[pos + 1 : end]
        named = {b"lt": "<", b"gt": ">", b"amp": "&", b"quot": '"'}.get(name)
        if named is None:
            return 0, pos
        code = ord(named)
    if src[end] == ord(";"):
        end += 1
    return code, end


@dataclass
class _Tag:
    name: str
    argument: str
    u16_offset: int
    out_pos: int
    unix_time: int = 0


def _parse_html(text: str) -> FormattedText:
    """Port of `parse_html()` (tdlib/td td/telegram/MessageEntity.cpp): attributes may lack a value,
    `<blockquote expandable>` and `<tg-time unix=... format=...>` are understood, and character
    references that decode to half of a surrogate pair make the whole text invalid."""
    src = _Bytes(text)
    out = bytearray()
    entities: list[Entity] = []
    stack: list[_Tag] = []
    u16 = 0
    bad_surrogate = False
    i = 0
    while i < src.size:
        c = src[i]
        if c == ord("&"):
            code, after = _decode_html_entity(src, i)
            if code:
                u16 += 2 if code > 0xFFFF else 1
                bad_surrogate = bad_surrogate or 0xD800 <= code <= 0xDFFF
                out += chr(code).encode("utf-8", "surrogatepass")
                i = after
                continue
        if c != ord("<"):
            u16 += _u16_step(c)
            out.append(c)
            i += 1
            continue

        begin_pos = i
        i += 1
        if src[i] != ord("/"):
            while src[i] not in _SPACES and src[i] != ord(">"):
                i += 1
            if src[i] == 0:
                raise EntityParseError(f"Unclosed start tag at byte offset {begin_pos}")
            tag = src.data[begin_pos + 1 : i].decode("utf-8", "replace").lower()
            if tag not in _HTML_TAGS:
                raise EntityParseError(f'Unsupported start tag "{tag}" at byte offset {begin_pos}')
            argument = ""
            unix_time = 0
            while src[i] != ord(">"):
                while src[i] != 0 and src[i] in _SPACES:
                    i += 1
                if src[i] == ord(">"):
                    break
                attr_begin = i
                while src[i] not in _SPACES and src[i] not in b"=>/\"'":
                    i += 1
                attr_name = src.data[attr_begin:i].decode("utf-8", "replace")
                if not attr_name:
                    raise EntityParseError(f'Empty attribute name in the tag "{tag}" at byte offset {begin_pos}')
                while src[i] != 0 and src[i] in _SPACES:
                    i += 1
                if src[i] != ord("="):
                    if src[i] == 0:
                        raise EntityParseError(f'Unclosed start tag "{tag}" at byte offset {begin_pos}')
                    if tag == "blockquote" and attr_name == "expandable":
                        argument = "1"
                    continue
                i += 1
                while src[i] != 0 and src[i] in _SPACES:
                    i += 1
                if src[i] == 0:
                    raise EntityParseError(f'Unclosed start tag "{tag}" at byte offset {begin_pos}')
                if src[i] not in (ord("'"), ord('"')):
                    token_begin = i
                    while _is_alpha(src[i]) or _is_digit(src[i]) or src[i] in (ord("."), ord("-")):
                        i += 1
                    value = src.data[token_begin:i].decode("utf-8", "replace").lower()
                    if src[i] not in _SPACES and src[i] != ord(">"):
                        raise EntityParseError(f"Unexpected end of name token at byte offset {token_begin}")
                else:
                    quote = src[i]
                    i += 1
                    raw = bytearray()
                    while src[i] != quote and src[i] != 0:
                        if src[i] == ord("&"):
                            code, after = _decode_html_entity(src, i)
                            if code:
                                raw += chr(code).encode("utf-8", "surrogatepass")
                                i = after
                                continue
                        raw.append(src[i])
                        i += 1
                    if src[i] == quote:
                        i += 1
                    value = raw.decode("utf-8", "replace")
                if src[i] == 0:
                    raise EntityParseError(f"Unclosed start tag at byte offset {begin_pos}")
                if tag == "a" and attr_name == "href":
                    argument = value
                elif tag == "code" and attr_name == "class" and value.startswith("language-"):
                    argument = value[9:]
                elif tag == "span" and attr_name == "class" and value.startswith("tg-"):
                    argument = value[3:]
                elif tag == "tg-emoji" and attr_name == "emoji-id":
                    argument = value
                elif tag == "blockquote" and attr_name == "expandable":
                    argument = "1"
                elif tag == "tg-time" and attr_name == "unix":
                    unix_time = _leading_int32(value)
                elif tag == "tg-time" and attr_name == "format":
                    argument = value
            if tag == "span" and argument != "spoiler":
                raise EntityParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {begin_pos}')
            stack.append(_Tag(tag, argument, u16, len(out), unix_time))
            i += 1
            continue

        if not stack:
            raise EntityParseError(f"Unexpected end tag at byte offset {begin_pos}")
        while src[i] not in _SPACES and src[i] != ord(">"):
            i += 1
        end_tag = src.data[begin_pos + 2 : i].decode("utf-8", "replace").lower()
        while src[i] != 0 and src[i] in _SPACES:
            i += 1
        if src[i] != ord(">"):
            raise EntityParseError(f"Unclosed end tag at byte offset {begin_pos}")
        open_tag = stack[-1]
        if end_tag and end_tag != open_tag.name:
            raise EntityParseError(
                f'Unmatched end tag at byte offset {begin_pos}, expected "</{open_tag.name}>", found "</{end_tag}>"'
            )
        if u16 > open_tag.u16_offset:
            _close_html_entity(entities, open_tag, u16, out)
        stack.pop()
        i += 1
    if stack:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
    for entity in entities:
        if entity["type"] == "code":
            entity.pop("language", None)
    if bad_surrogate:  # each half is encoded on its own, so even a matched pair is invalid UTF-8
        raise EntityParseError(
            "Text contains invalid Unicode characters after decoding HTML entities, "
            "check for unmatched surrogate code units"
        )
    return FormattedText(out.decode("utf-8", "replace"), _sort(entities))


def _leading_int32(value: str) -> int:
    """TDLib's to_integer<int32>: an optional '-' and the leading digits, wrapping like a C++ int32."""
    match = re.match(r"-?[0-9]*", value)
    digits = match.group(0) if match else ""
    number = int(digits.lstrip("-") or "0") % 2**32
    if digits.startswith("-"):
        number = -number % 2**32
    return number - 2**32 if number >= 2**31 else number


def _close_html_entity(entities: list[Entity], tag: _Tag, u16: int, out: bytearray) -> None:
    offset = tag.u16_offset
    length = u16 - offset
    name = tag.name
    if name in _HTML_KIND:
        entities.append(_entity(_HTML_KIND[name], offset, length))
    elif name == "blockquote":
        entities.append(_entity("expandable_blockquote" if tag.argument else "blockquote", offset, length))
    elif name == "tg-emoji":
        emoji_id = _exact_int(tag.argument, 64)
        if not emoji_id:
            raise EntityParseError("Invalid custom emoji identifier specified")
        entities.append(_entity("custom_emoji", offset, length, custom_emoji_id=str(emoji_id)))
    elif name == "tg-time":
        date_format = _date_time_format(tag.argument)
        if tag.unix_time > 0:
            entities.append(_entity("date_time", offset, length, unix_time=tag.unix_time, date_time_format=date_format))
    elif name == "a":
        url = tag.argument or out[tag.out_pos :].decode("utf-8", "replace")
        link = _link_entity(offset, length, url)
        if link is not None:
            entities.append(link)
    elif name == "pre":
        last = entities[-1] if entities else None
        if (
            last is not None
            and last["type"] == "code"
            and (last["offset"], last["length"]) == (offset, length)
            and last.get("language")
        ):
            last["type"] = "pre"
        else:
            entities.append(_entity("pre", offset, length))
    elif name == "code":
        last = entities[-1] if entities else None
        if (
            last is not None
            and last["type"] == "pre"
            and (last["offset"], last["length"]) == (offset, length)
            and tag.argument
        ):
            last["language"] = tag.argument
        else:
            entity = _entity("code", offset, length)
            if tag.argument:
                entity["language"] = tag.argument
            entities.append(entity)


# --- automatic entities (what Telegram detects in any text) --------------------------------------

_AUTO_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("bot_command", re.compile(r"(?<![\w/<>])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![\w/<>])")),
    ("mention", re.compile(r"(?<!\w)@[A-Za-z0-9_]{2,32}(?!\w)")),
    ("hashtag", re.compile(r"(?<![\w#])#\w*[^\W\d_]\w*(?![\w#])")),
    ("url", re.compile(r"(?<![\w@/.])(?:https?://)?(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?::\d+)?(?:/[^\s]*)?")),
)


def auto_entities(text: str, existing: list[Entity]) -> list[Entity]:
    """Add bot_command/mention/hashtag/url entities Telegram finds, skipping covered ranges."""
    found: list[Entity] = []
    taken = [(e["offset"], e["offset"] + e["length"]) for e in existing if e["type"] in ("code", "pre", "text_link")]
    claimed: list[tuple[int, int]] = []
    for kind, pattern in _AUTO_PATTERNS:
        for match in pattern.finditer(text):
            start = utf16_len(text[: match.start()])
            end = start + utf16_len(match.group(0))
            if any(s < end and start < e for s, e in taken + claimed):
                continue
            claimed.append((start, end))
            found.append(_entity(kind, start, end - start))
    return _sort(existing + found) if found else existing
