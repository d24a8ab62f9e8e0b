"""What the parse modes share: the error type, TDLib's notion of a space, UTF-16 counting per byte."""

from __future__ import annotations


class MarkupError(Exception):
    """Markup Telegram would refuse; `str(exc)` is TDLib's description (without "Can't parse entities: ")."""


def is_space(c: int) -> bool:
    """TDLib's `is_space` (tdutils/td/utils/misc.h): also NUL, which ends its scans at the end of the string."""
    return c in (0x20, 0x09, 0x0A, 0x0D, 0x0B, 0x0C, 0x00)


def utf16_units(c: int) -> int:
    """UTF-16 units contributed by a UTF-8 byte: 0 for continuation bytes, 2 for 4-byte sequences."""
    if (c & 0xC0) == 0x80:
        return 0
    return 2 if c >= 0xF0 else 1
