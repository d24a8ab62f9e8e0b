"""Telegram's HTML subset: the supported tags only, properly nested; '<' and '&' escaped.

A port of `parse_html()` and `decode_html_entity()` in tdlib/td td/telegram/MessageEntity.cpp.
"""

from __future__ import annotations

from ._common import MarkupError, check_date_format, is_exact_integer, is_space

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


def parse_html(text: bytes) -> str:
    """Telegram HTML: the supported tags only, properly nested; '<' and '&' must be escaped."""
    size = len(text)

    def at(k: int) -> int:
        return text[k] if k < size else 0

    out: list[str] = []
    plain = bytearray()
    open_tags: list[tuple[str, bytes, int]] = []  # name, the argument checked at its end, shown so far
    shown = 0  # characters of visible text so far (an empty element is not checked at its end)
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
                shown += 1
                i = end
                continue
        if c != ord("<"):
            plain.append(c)
            shown += 1
            i += 1
            continue
        begin = i
        i += 1
        if at(i) != ord("/"):
            while not is_space(at(i)) and at(i) != ord(">"):
                i += 1
            if at(i) == 0:
                raise MarkupError(f"Unclosed start tag at byte offset {begin}")
            tag = text[begin + 1 : i].decode("utf-8", "replace").lower()
            if tag not in _HTML_TAGS:
                raise MarkupError(f'Unsupported start tag "{tag}" at byte offset {begin}')
            argument = ""
            checked = b""
            while at(i) != ord(">"):
                while at(i) != 0 and is_space(at(i)):
                    i += 1
                if at(i) == ord(">"):
                    break
                attr_begin = i
                while not is_space(at(i)) and at(i) not in b"=>/\"'":
                    i += 1
                attribute = text[attr_begin:i].decode("utf-8", "replace")
                if not attribute:
                    raise MarkupError(f'Empty attribute name in the tag "{tag}" at byte offset {begin}')
                while at(i) != 0 and is_space(at(i)):
                    i += 1
                if at(i) != ord("="):
                    if at(i) == 0:
                        raise MarkupError(f'Unclosed start tag "{tag}" at byte offset {begin}')
                    if tag == "blockquote" and attribute == "expandable":
                        argument = "1"
                    continue
                i += 1
                while at(i) != 0 and is_space(at(i)):
                    i += 1
                if at(i) == 0:
                    raise MarkupError(f'Unclosed start tag "{tag}" at byte offset {begin}')
                if at(i) not in (ord("'"), ord('"')):
                    token_begin = i
                    while chr(at(i)).isascii() and (chr(at(i)).isalnum() or at(i) in b".-") and at(i) != 0:
                        i += 1
                    if not is_space(at(i)) and at(i) != ord(">"):
                        raise MarkupError(f"Unexpected end of name token at byte offset {token_begin}")
                    value_bytes = bytearray(text[token_begin:i].lower())
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
                if at(i) == 0:
                    raise MarkupError(f"Unclosed start tag at byte offset {begin}")
                if tag == "span" and attribute == "class" and value_bytes.startswith(b"tg-"):
                    argument = value_bytes[3:].decode("utf-8", "replace")
                elif (tag, attribute) in (("tg-emoji", "emoji-id"), ("tg-time", "format")):
                    checked = bytes(value_bytes)
            if tag == "span" and argument != "spoiler":
                raise MarkupError(f'Tag "span" must have class "tg-spoiler" at byte offset {begin}')
            open_tags.append((tag, checked, shown))
            i += 1
            continue
        # an end tag
        if not open_tags:
            raise MarkupError(f"Unexpected end tag at byte offset {begin}")
        while not is_space(at(i)) and at(i) != ord(">"):
            i += 1
        end_tag = text[begin + 2 : i].decode("utf-8", "replace").lower()
        while is_space(at(i)) and at(i) != 0:
            i += 1
        if at(i) != ord(">"):
            raise MarkupError(f"Unclosed end tag at byte offset {begin}")
        expected, checked, shown_at_start = open_tags.pop()
        if end_tag and end_tag != expected:
            raise MarkupError(
                f'Unmatched end tag at byte offset {begin}, expected "</{expected}>", found "</{end_tag}>"'
            )
        if shown > shown_at_start:
            _check_element(expected, checked)
        i += 1
    if open_tags:
        raise MarkupError(f'Can\'t find end tag corresponding to start tag "{open_tags[-1][0]}"')
    if bad_surrogate:
        raise MarkupError(
            "Text contains invalid Unicode characters after decoding HTML entities, "
            "check for unmatched surrogate code units"
        )
    flush()
    return "".join(out)


def _check_element(tag: str, checked: bytes) -> None:
    """What parse_html() checks when a non-empty element ends: a custom emoji's id, a date's format."""
    if tag == "tg-emoji" and (not is_exact_integer(checked, 64) or checked == b"0"):
        raise MarkupError("Invalid custom emoji identifier specified")
    if tag == "tg-time":
        check_date_format(checked)
