"""The composer's photo field: an http(s) URL as before, or a file on this machine.

A file is read and checked against Telegram's photo limits as you type (its header gives the type
and size; a 10 MB file is read once per change, not per keystroke elsewhere), and stored with the
broadcast, in its transaction, when you send (`submission.submit`): then it is uploaded once and reused for every group.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tgms_tui.backend import broadcast_photos
from tgms_tui.backend.image_header import MAX_PHOTO_BYTES, PhotoInfo, check_photo
from tgms_tui.backend.message_validation import ValidationError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def is_url(value: str) -> bool:
    """Anything that is not plainly a file path is judged as a URL (so "not a url" is a wrong URL)."""
    return not looks_like_path(value)


def looks_like_path(value: str) -> bool:
    value = value.strip()
    if not value or "://" in value:
        return False
    return value.startswith(("/", "~", ".")) or os.sep in value or value.lower().endswith(IMAGE_SUFFIXES)


class PhotoField:
    """Remembers the last file read, so that typing elsewhere does not read it again."""

    def __init__(self) -> None:
        self._key: tuple[str, float, int] | None = None
        self._photo: tuple[bytes, str, PhotoInfo] | None = None
        self._error: ValidationError | None = None

    @property
    def file(self) -> tuple[bytes, str] | None:
        """The file to store with the broadcast (None for a URL or nothing)."""
        return None if self._photo is None else (self._photo[0], self._photo[1])

    @property
    def info(self) -> PhotoInfo | None:
        return None if self._photo is None else self._photo[2]

    def photo_url(self, value: str) -> str:
        """What the broadcast's `photo_url` is for this field; ValidationError("photo") for a bad file."""
        value = value.strip()
        if not looks_like_path(value):
            self._key, self._photo, self._error = None, None, None
            return value
        path = Path(os.path.expanduser(value))
        try:
            stat = path.stat()
        except OSError as exc:
            self._key, self._photo = None, None
            raise ValidationError("photo", f"cannot read {value}: {exc.strerror or exc}") from None
        key = (str(path), stat.st_mtime, stat.st_size)
        if key != self._key:
            self._key, self._photo, self._error = key, None, None
            try:
                if stat.st_size > MAX_PHOTO_BYTES:
                    raise ValidationError("photo", f"{stat.st_size:,} bytes; Telegram takes photos of at most 10 MB")
                data = path.read_bytes()
                self._photo = (data, path.name, check_photo(data))
            except ValidationError as exc:
                self._error = exc
            except OSError as exc:
                self._error = ValidationError("photo", f"cannot read {value}: {exc.strerror or exc}")
        if self._error is not None:
            raise self._error
        assert self._photo is not None
        return broadcast_photos.ref(hashlib.sha256(self._photo[0]).hexdigest())
