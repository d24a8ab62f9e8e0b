"""Legacy Markdown as Telegram parses it: *bold* _italic_ `code` ```pre``` [text](url).

A port of `parse_markdown()` in tdlib/td td/telegram/MessageEntity.cpp: no nesting, a backslash
escapes only _ * ` [ and only outside entities, errors give UTF-8 byte offsets.
"""

from __future__ import annotations

from ._common import MarkupError, is_space


def parse_markdown(text: bytes) -> bytes:
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
            while not is_space(at(language_end)) and at(language_end) != ord("`"):
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
            raise MarkupError(f"Can't find end of the entity starting at byte offset {begin_pos}")
        # TDLib reads the (url) part only for a non-empty link text; "[](x)" shows "(x)".
        if c == ord("[") and len(out) > content_start and at(i + 1) == ord("("):
            i += 2
            while i < size and text[i] != ord(")"):
                i += 1
        if is_pre:
            i += 2
        i += 1
    return bytes(out)
