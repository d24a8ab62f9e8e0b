"""What the parse modes share: the error type, TDLib's notion of a space, UTF-16 counting per byte."""

from __future__ import annotations


class MarkupError(Exception):
    """Markup Telegram would refuse; `str(exc)` is TDLib's description (without "Can't parse entities: ")."""


def is_space(c: int) -> bool:
    """TDLib's `is_space` (tdutils/td/utils/misc.h): also NUL, which ends its scans at the end of the string."""
    return c in (0x20, 0x09, 0x0A, 0x0D, 0x0B, 0x00)  # not form feed


def utf16_units(c: int) -> int:
    """UTF-16 units contributed by a UTF-8 byte: 0 for continuation bytes, 2 for 4-byte sequences."""
    if (c & 0xC0) == 0x80:
        return 0
    return 2 if c >= 0xF0 else 1


def is_exact_integer(value: bytes, bits: int) -> bool:
    """TDLib's `to_integer_safe<intN>` succeeds: the bytes are exactly how the integer prints, in range."""
    digits = value[1:] if value.startswith(b"-") else value
    if not digits.isdigit() or not digits.isascii() or (digits.startswith(b"0") and value != b"0"):
        return False
    return -(2 ** (bits - 1)) <= int(value) < 2 ** (bits - 1)


def check_date_format(date_format: bytes) -> None:
    """`get_date_flags()` in tdlib/td td/telegram/MessageEntity.cpp: "r"/"R", or any of t T d D w W."""
    if date_format not in (b"r", b"R") and date_format.strip(b"tTdDwW"):
        raise MarkupError("Invalid date format used")


def tg_link_parameters(url: bytes, host: bytes) -> list[tuple[bytes, bytes]] | None:
    """The key/value pairs of a tg://<host>?k=v&... link, None if `url` is not one
    (`LinkManager::check_tg_url_host()` in tdlib/td td/telegram/LinkManager.cpp)."""
    if url[:3].lower() != b"tg:":
        return None
    rest = url[3:]
    if rest.startswith(b"//"):
        rest = rest[2:]
    if rest[: len(host)].lower() != host or (len(rest) > len(host) and rest[len(host) : len(host) + 1] not in b"/?#"):
        return None
    rest = rest[len(host) :]
    if rest.startswith(b"/"):
        rest = rest[1:]
    if not rest.startswith(b"?"):
        return None
    query = rest[1:].split(b"#", 1)[0]
    pairs = []
    for parameter in query.split(b"&"):
        if parameter:
            key, _, value = parameter.partition(b"=")
            pairs.append((key, value))
    return pairs
