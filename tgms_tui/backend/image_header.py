"""A photo from disk checked against Telegram's limits for sendPhoto, before anything is stored.

Telegram refuses a photo over 10 MB, one whose width + height exceeds 10000, or one whose sides
differ by more than 20 times; it would refuse it in every group at once, so TGMS refuses it at submit
(naming the field `photo`). The type and the dimensions come from the image's own header, not from
the file name: a few bytes of JPEG, PNG or WebP structure are enough, so no image library is needed
(and nothing decodes untrusted pixel data).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .message_validation import ValidationError

MAX_PHOTO_BYTES = 10 * 1024 * 1024
MAX_SIDES_SUM = 10_000
MAX_ASPECT_RATIO = 20
FIELD = "photo"

# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic...); not DHT/JPG/DAC.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# Markers without a length: TEM, RST0-7, SOI, EOI.
_STANDALONE = {0x01, *range(0xD0, 0xDA)}


@dataclass(frozen=True)
class PhotoInfo:
    media_type: str  # image/jpeg, image/png or image/webp
    width: int
    height: int
    size: int


class NotAnImage(ValueError):
    """The bytes are not a JPEG, PNG or WebP image whose size can be read."""


def dimensions(data: bytes) -> tuple[str, int, int]:
    """(media type, width, height) read from the header; NotAnImage otherwise."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png", *_png(data)
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg", *_jpeg(data)
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", *_webp(data)
    raise NotAnImage("not a JPEG, PNG or WebP image")


def check_photo(data: bytes) -> PhotoInfo:
    """The photo's type and size if Telegram would take it as a photo; ValidationError("photo") if not."""
    if not data:
        raise ValidationError(FIELD, "the file is empty")
    if len(data) > MAX_PHOTO_BYTES:
        raise ValidationError(
            FIELD, f"{len(data):,} bytes; Telegram takes photos of at most 10 MB ({MAX_PHOTO_BYTES:,})"
        )
    try:
        media_type, width, height = dimensions(data)
    except NotAnImage as exc:
        raise ValidationError(FIELD, f"{exc} (Telegram photos: JPEG, PNG or WebP)") from None
    if width < 1 or height < 1:
        raise ValidationError(FIELD, f"the image header gives an empty size ({width}x{height})")
    if width + height > MAX_SIDES_SUM:
        raise ValidationError(
            FIELD, f"{width}x{height}: width + height is {width + height}; Telegram takes at most {MAX_SIDES_SUM}"
        )
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ValidationError(
            FIELD,
            f"{width}x{height}: the sides' ratio is over {MAX_ASPECT_RATIO} (Telegram's limit)",
        )
    return PhotoInfo(media_type, width, height, len(data))


def _png(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise NotAnImage("a PNG without its IHDR header")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _jpeg(data: bytes) -> tuple[int, int]:
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise NotAnImage("a JPEG whose markers are damaged")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _STANDALONE:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if length < 2:
            raise NotAnImage("a JPEG whose markers are damaged")
        if marker in _SOF:
            if i + 9 > n:
                break
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        if marker == 0xDA:  # start of scan before any frame header
            break
        i += 2 + length
    raise NotAnImage("a JPEG without a frame header (no size)")


def _webp(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        if data[23:26] != b"\x9d\x01\x2a":
            raise NotAnImage("a WebP (lossy) without its frame start code")
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        if data[20] != 0x2F:
            raise NotAnImage("a WebP (lossless) without its signature")
        b0, b1, b2, b3 = data[21:25]
        width = 1 + (b0 | (b1 & 0x3F) << 8)
        height = 1 + (b1 >> 6 | b2 << 2 | (b3 & 0x0F) << 10)
        return width, height
    if chunk == b"VP8X" and len(data) >= 30:
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
        return width, height
    raise NotAnImage("a WebP whose size cannot be read")
