"""Broadcast validation with Telegram's own rules, before anything is stored or sent.

A broadcast that Telegram would reject (bad markup, too long, bad URL) would fail in every group at
once, and content errors must never count against a group. So the admin API, the CLI and
the TUI composer all validate here first, with messages worded like Telegram's.

The markup parsers follow TDLib's `parse_markdown`, `parse_markdown_v2` and `parse_html`
(td/telegram/MessageEntity.cpp): same reserved characters, same error texts, same UTF-8 byte offsets.
They only report errors and the visible text; entities themselves are not needed here. Lengths count
UTF-16 code units of the text after parsing, as Telegram does.

No Textual or Starlette imports: the webhook server, the workers and the TUI all use this module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
RAW_TEXT_BYTES_LIMIT = 32768  # Telegram: "text is too long" before parsing
URL_LIMIT = 2048
MAX_TARGET_GROUPS = 10_000
SEND_AT_TOLERANCE = timedelta(minutes=1)
PARSE_MODES = {"markdown": "Markdown", "markdownv2": "MarkdownV2", "html": "HTML"}
PHASES = ("growth", "monitoring")
_BIGINT = 2**63

_KNOWN_FIELDS = {"text", "photo_url", "caption", "parse_mode", "target", "final", "is_final", "send_at"}


class ValidationError(ValueError):
    """A broadcast field Telegram (or TGMS) would reject; `field` names it for a 422 or the composer."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class BroadcastRequest:
    """A validated broadcast: exactly one of text / photo_url; target in the stored form
    ({"kind": "all"} | {"kind": "phase", "phase": ...} | {"kind": "groups", "group_ids": [...]})."""

    text: str | None
    photo_url: str | None
    caption: str | None
    parse_mode: str | None
    target: dict[str, Any]
    is_final: bool = False
    send_at: datetime | None = None


# ---------------------------------------------------------------- markup parsing (TDLib ports)


class _MarkupError(Exception):
    pass


def _is_space(c: int) -> bool:
    # td::is_space also counts NUL, which is what ends TDLib's scans at the end of the string.
    return c in (0x20, 0x09, 0x0A, 0x0D, 0x0B, 0x0C, 0x00)


def _utf16_units(c: int) -> int:
    """UTF-16 units contributed by a UTF-8 byte: 0 for continuation bytes, 2 for 4-byte sequences."""
    if (c & 0xC0) == 0x80:
        return 0
    return 2 if c >= 0xF0 else 1


def _reserved(c: int) -> str:
    return f"Character '{chr(c)}' is reserved and must be escaped with the preceding '\\'"


def _parse_markdown(text: bytes) -> bytes:
    """Legacy Markdown: *bold* _italic_ `code` ```pre``` [text](url); no nesting; escapes only outside."""
    size = len(text)

    def at(k: int) -> int:
        return text[k] if k < size else 0

    out = bytearray()
    i = 0
    while i < size:
        c = text[i]
        if c == 0x5C and at(i + 1) in b"_*`[" and at(i + 1) != 0:
            i += 1
            out.append(text[i])
            i += 1
            continue
        if c not in b"_*`[":
            out.append(c)
            i += 1
            continue
        begin_pos = i
        end_character = ord("]") if c == ord("[") else c
        is_pre = False
        i += 1
        if c == ord("`") and at(i) == ord("`") and at(i + 1) == ord("`"):
            i += 2
            is_pre = True
            language_end = i
            while not _is_space(at(language_end)) and at(language_end) != ord("`"):
                language_end += 1
            if i != language_end and language_end < size and at(language_end) != ord("`"):
                i = language_end
            if at(i) in (0x0A, 0x0D):
                i += 2 if at(i + 1) in (0x0A, 0x0D) and at(i) != at(i + 1) else 1
        content_start = len(out)
        while i < size and (
            text[i] != end_character or (is_pre and not (at(i + 1) == ord("`") and at(i + 2) == ord("`")))
        ):
            out.append(text[i])
            i += 1
        if i >= size:
            raise _MarkupError(f"Can't find end of the entity starting at byte offset {begin_pos}")
        # TDLib reads the (url) part only for a non-empty link text; "[](x)" shows "(x)".
        if c == ord("[") and len(out) > content_start and at(i + 1) == ord("("):
            i += 2
            while i < size and text[i] != ord(")"):
                i += 1
        if is_pre:
            i += 2
        i += 1
    return bytes(out)


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


def _parse_markdown_v2(text: bytes) -> bytes:
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
            units = _utf16_units(c)
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
                    raise _MarkupError(_reserved(c))
                i += 1
                kind = "Spoiler"
            elif c == ord("["):
                kind = "TextUrl"
            elif c == ord("`"):
                if at(i + 1) == ord("`") and at(i + 2) == ord("`"):
                    i += 3
                    kind = "Pre"
                    language_end = i
                    while not _is_space(at(language_end)) and at(language_end) != ord("`"):
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
                    raise _MarkupError(_reserved(c))
                i += 1
                kind = "CustomEmoji"
            elif c == 0x0A:
                utf16 += 1
                out.append(0x0A)
                can_start_blockquote = True
                kind = None
            elif c == ord(">"):
                if not can_start_blockquote:
                    raise _MarkupError(_reserved(c))
                if have_blockquote:
                    kind = None
                else:
                    kind = "BlockQuote"
                    have_blockquote = True
            else:
                raise _MarkupError(_reserved(c))
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
                raise _MarkupError(f"Can't find end of {kind} entity at byte offset {top_open.byte_offset}")
            nested.pop()
            top_open = nested[-1]
            if top_open.type != "BlockQuote":
                raise _MarkupError(f"Can't find end of {top_open.type} entity at byte offset {top_open.byte_offset}")
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
                    raise _MarkupError(f"Can't find end of a URL at byte offset {url_begin}")
                if kind == "CustomEmoji":
                    _check_custom_emoji_url(bytes(url))
            elif kind == "CustomEmoji":
                raise _MarkupError("Custom emoji entity must contain a tg://emoji URL")
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
        raise _MarkupError(f"Can't find end of {nested[-1].type} entity at byte offset {nested[-1].byte_offset}")
    return bytes(out)


def _check_custom_emoji_url(url: bytes) -> None:
    parts = urlsplit(url.decode("utf-8", "replace"))
    query = dict(p.partition("=")[::2] for p in parts.query.split("&") if p)
    ident = query.get("id", "")
    if parts.scheme.lower() != "tg" or parts.netloc.lower() != "emoji" or not ident.isdigit() or ident.startswith("0"):
        raise _MarkupError("Invalid tg://emoji URL specified")


_HTML_TAGS = frozenset(
    {"a", "b", "strong", "i", "em", "s", "strike", "del", "u", "ins", "tg-spoiler", "tg-emoji", "tg-time"}
    | {"span", "pre", "code", "blockquote"}
)
_HTML_NAMED = {b"lt": "<", b"gt": ">", b"amp": "&", b"quot": '"'}


def _decode_html_entity(text: bytes, pos: int) -> tuple[int, int]:
    """TDLib's decode_html_entity: (code point, position after it), or (0, pos) when not an entity."""
    size = len(text)

    def at(k: int) -> int:
        return text[k] if k < size else 0

    end = pos + 1
    code = 0
    if at(pos + 1) == ord("#"):
        end += 1
        if at(pos + 2) == ord("x"):
            end += 1
            while chr(at(end)) in "0123456789abcdefABCDEF" and at(end) != 0:
                code = code * 16 + int(chr(at(end)), 16)
                end += 1
        else:
            while ord("0") <= at(end) <= ord("9"):
                code = code * 10 + at(end) - ord("0")
                end += 1
        if code == 0 or code >= 0x10FFFF or end - pos >= 10:
            return 0, pos
    else:
        while chr(at(end)).isascii() and chr(at(end)).isalpha():
            end += 1
        named = _HTML_NAMED.get(text[pos + 1 : end])
        if named is None:
            return 0, pos
        code = ord(named)
    return code, end + 1 if at(end) == ord(";") else end


def _parse_html(text: bytes) -> str:
    """Telegram HTML: the supported tags only, properly nested; '<' and '&' must be escaped."""
    size = len(text)

    def at(k: int) -> int:
        return text[k] if k < size else 0

    out: list[str] = []
    plain = bytearray()
    open_tags: list[str] = []
    bad_surrogate = False

    def flush() -> None:
        if plain:
            out.append(plain.decode("utf-8", "replace"))
            plain.clear()

    i = 0
    while i < size:
        c = text[i]
        if c == ord("&"):
            code, end = _decode_html_entity(text, i)
            if code:
                if 0xD800 <= code <= 0xDFFF:
                    bad_surrogate = True
                else:
                    flush()
                    out.append(chr(code))
                i = end
                continue
        if c != ord("<"):
            plain.append(c)
            i += 1
            continue
        begin = i
        i += 1
        if at(i) != ord("/"):
            while not _is_space(at(i)) and at(i) != ord(">"):
                i += 1
            if at(i) == 0:
                raise _MarkupError(f"Unclosed start tag at byte offset {begin}")
            tag = text[begin + 1 : i].decode("utf-8", "replace").lower()
            if tag not in _HTML_TAGS:
                raise _MarkupError(f'Unsupported start tag "{tag}" at byte offset {begin}')
            argument = ""
            while at(i) != ord(">"):
                while at(i) != 0 and _is_space(at(i)):
                    i += 1
                if at(i) == ord(">"):
                    break
                attr_begin = i
                while not _is_space(at(i)) and at(i) not in b"=>/\"'":
                    i += 1
                attribute = text[attr_begin:i].decode("utf-8", "replace")
                if not attribute:
                    raise _MarkupError(f'Empty attribute name in the tag "{tag}" at byte offset {begin}')
                while at(i) != 0 and _is_space(at(i)):
                    i += 1
                if at(i) != ord("="):
                    if at(i) == 0:
                        raise _MarkupError(f'Unclosed start tag "{tag}" at byte offset {begin}')
                    if tag == "blockquote" and attribute == "expandable":
                        argument = "1"
                    continue
                i += 1
                while at(i) != 0 and _is_space(at(i)):
                    i += 1
                if at(i) == 0:
                    raise _MarkupError(f'Unclosed start tag "{tag}" at byte offset {begin}')
                if at(i) not in (ord("'"), ord('"')):
                    token_begin = i
                    while chr(at(i)).isascii() and (chr(at(i)).isalnum() or at(i) in b".-") and at(i) != 0:
                        i += 1
                    if not _is_space(at(i)) and at(i) != ord(">"):
                        raise _MarkupError(f"Unexpected end of name token at byte offset {token_begin}")
                    value = text[token_begin:i].decode("ascii").lower()
                else:
                    quote = at(i)
                    i += 1
                    value_bytes = bytearray()
                    while at(i) != quote and at(i) != 0:
                        if at(i) == ord("&"):
                            code, end = _decode_html_entity(text, i)
                            if code:
                                value_bytes += chr(code).encode("utf-8", "surrogatepass")
                                i = end
                                continue
                        value_bytes.append(at(i))
                        i += 1
                    if at(i) == quote:
                        i += 1
                    value = value_bytes.decode("utf-8", "replace")
                if at(i) == 0:
                    raise _MarkupError(f"Unclosed start tag at byte offset {begin}")
                if tag == "span" and attribute == "class" and value.startswith("tg-"):
                    argument = value[3:]
            if tag == "span" and argument != "spoiler":
                raise _MarkupError(f'Tag "span" must have class "tg-spoiler" at byte offset {begin}')
            open_tags.append(tag)
            i += 1
            continue
        # an end tag
        if not open_tags:
            raise _MarkupError(f"Unexpected end tag at byte offset {begin}")
        while not _is_space(at(i)) and at(i) != ord(">"):
            i += 1
        end_tag = text[begin + 2 : i].decode("utf-8", "replace").lower()
        while _is_space(at(i)) and at(i) != 0:
            i += 1
        if at(i) != ord(">"):
            raise _MarkupError(f"Unclosed end tag at byte offset {begin}")
        expected = open_tags.pop()
        if end_tag and end_tag != expected:
            raise _MarkupError(
                f'Unmatched end tag at byte offset {begin}, expected "</{expected}>", found "</{end_tag}>"'
            )
        i += 1
    if open_tags:
        raise _MarkupError(f'Can\'t find end tag corresponding to start tag "{open_tags[-1]}"')
    if bad_surrogate:
        raise _MarkupError(
            "Text contains invalid Unicode characters after decoding HTML entities, "
            "check for unmatched surrogate code units"
        )
    flush()
    return "".join(out)


def _parsed_text(text: str, parse_mode: str | None) -> str:
    """The text Telegram would show (markup removed), or _MarkupError with Telegram's description."""
    mode = normalise_parse_mode(parse_mode)
    raw = text.encode("utf-8")
    if mode == "Markdown":
        return _parse_markdown(raw).decode("utf-8", "replace")
    if mode == "MarkdownV2":
        return _parse_markdown_v2(raw).decode("utf-8", "replace")
    if mode == "HTML":
        return _parse_html(raw)
    return text


# ---------------------------------------------------------------- public helpers


def normalise_parse_mode(value: str | None) -> str | None:
    """Telegram's spelling of a parse mode given in any case; None for absent/empty. ValueError if unknown."""
    if value is None or value.strip() == "":
        return None
    try:
        return PARSE_MODES[value.strip().lower()]
    except KeyError:
        raise ValueError("unsupported parse_mode (use Markdown, MarkdownV2 or HTML)") from None


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
        _parsed_text(text, parse_mode)
    except _MarkupError as exc:
        return f"can't parse entities: {exc}"
    except ValueError as exc:
        return str(exc)
    return None


def visible_length(text: str, parse_mode: str | None) -> int:
    """UTF-16 length of what Telegram would show (markup removed, surrounding whitespace trimmed).
    For markup that does not parse, the raw length (the TUI shows the markup error separately)."""
    try:
        shown = _parsed_text(text, parse_mode)
    except (_MarkupError, ValueError, UnicodeEncodeError):
        shown = text
    return utf16_length(shown.strip())


# ---------------------------------------------------------------- the request


def validate_broadcast(data: Mapping[str, Any], *, now: datetime | None = None) -> BroadcastRequest:
    """Check an admin API / composer payload; ValidationError names the first failing field.

    Fields: text | photo_url (+ caption), parse_mode, target ("all" | {"phase": ...} |
    {"group_ids": [...]}), final (bool), send_at (ISO-8601 with a timezone, not in the past).
    """
    if not isinstance(data, Mapping):
        raise ValidationError("body", "expected a JSON object")
    for key in data:
        if key not in _KNOWN_FIELDS:
            raise ValidationError(str(key), "unknown field")

    text = _optional_str(data, "text")
    photo_url = _optional_str(data, "photo_url")
    caption = _optional_str(data, "caption")

    raw_mode = data.get("parse_mode")
    if raw_mode is not None and not isinstance(raw_mode, str):
        raise ValidationError("parse_mode", "must be a string: Markdown, MarkdownV2 or HTML")
    try:
        parse_mode = normalise_parse_mode(raw_mode)
    except ValueError as exc:
        raise ValidationError("parse_mode", str(exc)) from None

    if text is not None and photo_url is not None:
        raise ValidationError("photo_url", "give either text or photo_url, not both")
    if text is None and photo_url is None:
        raise ValidationError("text", "message text is empty: give text or photo_url")

    if text is not None:
        if caption is not None:
            raise ValidationError("caption", "a caption goes with photo_url, not with text")
        _check_content("text", text, parse_mode, TEXT_LIMIT, allow_empty=False)
    else:
        assert photo_url is not None
        _check_photo_url(photo_url)
        if caption is not None:
            _check_content("caption", caption, parse_mode, CAPTION_LIMIT, allow_empty=True)

    final = data.get("final", data.get("is_final", False))
    if final is None:
        final = False
    if not isinstance(final, bool):
        raise ValidationError("final", "must be true or false")

    return BroadcastRequest(
        text=text,
        photo_url=photo_url,
        caption=caption,
        parse_mode=parse_mode,
        target=normalise_target(data.get("target")),
        is_final=final,
        send_at=_send_at(data.get("send_at"), now),
    )


def normalise_target(value: Any) -> dict[str, Any]:
    """The stored form of a target; ValidationError(field="target") when it is not one."""
    if value is None or value == "all":
        return {"kind": "all"}
    if not isinstance(value, Mapping):
        raise ValidationError("target", 'expected "all", {"phase": ...} or {"group_ids": [...]}')
    kind = value.get("kind")
    keys = set(value) - {"kind"}
    if kind == "all" and not keys:
        return {"kind": "all"}
    if keys == {"phase"} and kind in (None, "phase"):
        phase = value["phase"]
        if phase not in PHASES:
            raise ValidationError("target", 'phase must be "growth" or "monitoring"')
        return {"kind": "phase", "phase": phase}
    if keys == {"group_ids"} and kind in (None, "groups"):
        ids = value["group_ids"]
        if not isinstance(ids, list) or not ids:
            raise ValidationError("target", "group_ids must be a non-empty list of chat ids")
        if len(ids) > MAX_TARGET_GROUPS:
            raise ValidationError("target", f"at most {MAX_TARGET_GROUPS} group_ids")
        seen: dict[int, None] = {}
        for gid in ids:
            if isinstance(gid, bool) or not isinstance(gid, int) or not -_BIGINT <= gid < _BIGINT:
                raise ValidationError("target", f"group_ids must be integers, got {gid!r:.40}")
            seen[gid] = None
        return {"kind": "groups", "group_ids": list(seen)}
    raise ValidationError("target", 'expected "all", {"phase": ...} or {"group_ids": [...]}')


def _optional_str(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(name, "must be a string")
    if value.strip() == "":
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(name, "must be valid UTF-8 (it contains an unpaired surrogate)") from None
    return value


def _check_content(name: str, value: str, parse_mode: str | None, limit: int, *, allow_empty: bool) -> None:
    if len(value.encode("utf-8")) > RAW_TEXT_BYTES_LIMIT:
        raise ValidationError(name, f"{name} is too long (over {RAW_TEXT_BYTES_LIMIT} bytes before parsing)")
    error = check_markup(value, parse_mode)
    if error is not None:
        raise ValidationError(name, error)
    length = visible_length(value, parse_mode)
    if length == 0 and not allow_empty:
        raise ValidationError(name, "message text is empty")
    if length > limit:
        what = "message" if name == "text" else "message caption"
        raise ValidationError(name, f"{what} is too long ({length} characters after parsing, limit {limit})")


def _check_photo_url(url: str) -> None:
    if len(url) > URL_LIMIT:
        raise ValidationError("photo_url", f"wrong HTTP URL specified (longer than {URL_LIMIT} characters)")
    if any(ch.isspace() for ch in url):
        raise ValidationError("photo_url", "wrong HTTP URL specified (contains whitespace)")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ValidationError("photo_url", "wrong HTTP URL specified") from None
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise ValidationError("photo_url", "wrong HTTP URL specified (need http:// or https:// and a host)")


def _send_at(value: Any, now: datetime | None) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValidationError("send_at", "expected an ISO-8601 time such as 2026-05-01T09:00:00+00:00") from None
    else:
        raise ValidationError("send_at", "expected an ISO-8601 time string")
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValidationError("send_at", "needs a timezone (e.g. +00:00 or Z), otherwise the time is ambiguous")
    when = when.astimezone(UTC)
    current = now or datetime.now(UTC)
    if when < current - SEND_AT_TOLERANCE:
        raise ValidationError("send_at", "is in the past")
    if not math.isfinite(when.timestamp()):
        raise ValidationError("send_at", "is not a valid time")
    return when
