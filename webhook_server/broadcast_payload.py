"""The body of `POST /api/tgms/send`: JSON as always, or multipart/form-data carrying a photo file.

multipart/form-data parts:
- `photo`: the image file (JPEG, PNG or WebP; Telegram's photo limits are checked here: 10 MB,
  width + height <= 10000, sides' ratio <= 20), read from its header, not from its name;
- `payload` (optional): a JSON object with every other field of a broadcast (caption, parse_mode,
  target, final, send_at, buttons, delete_after, test, test_chat_id, variants, track_clicks,
  holdout), as in a JSON body.

Either body goes through `submission.prepare`, the path the CLI and the composer take too. The
multipart parser is the standard library's MIME parser: a form upload is a MIME multipart body.
"""

from __future__ import annotations

import json
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from tgms_tui.backend import submission
from tgms_tui.backend.image_header import MAX_PHOTO_BYTES
from tgms_tui.backend.message_validation import ValidationError
from tgms_tui.backend.submission import Submission

from .updates import MAX_BODY_BYTES

# A photo at Telegram's limit plus the form's own fields and boundaries.
UPLOAD_BODY_BYTES = MAX_PHOTO_BYTES + 256 * 1024
MULTIPART_PARTS = ("photo", "payload")


class PayloadError(Exception):
    """A body that is not a readable broadcast (400), naming the part."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail


def is_multipart(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "multipart/form-data"


def body_limit(content_type: str) -> int:
    return UPLOAD_BODY_BYTES if is_multipart(content_type) else MAX_BODY_BYTES


def parse(content_type: str, raw: bytes, public_base_url: str | None) -> Submission:
    """The broadcast in this body; PayloadError (unreadable) or ValidationError (refused, naming the field)."""
    photo: tuple[bytes, str] | None = None
    if is_multipart(content_type):
        fields, files = _multipart(content_type, raw)
        for name in [*fields, *files]:
            if name not in MULTIPART_PARTS:
                raise ValidationError(name, f"unknown part; a multipart broadcast has {' and '.join(MULTIPART_PARTS)}")
        if "photo" in fields or "photo" not in files:
            raise ValidationError("photo", "a multipart broadcast carries the image as the file part `photo`")
        data = _json_object(fields.get("payload", "{}"), "payload")
        photo = files["photo"]
    else:
        data = _json_object(raw, "body")
    return submission.prepare(data, public_base_url, photo)


def _json_object(raw: bytes | str, field: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise PayloadError(field, f"{field} is not valid JSON") from None
    if not isinstance(data, dict):
        raise ValidationError(field, f"{field} must be a JSON object")
    return data


def _multipart(content_type: str, raw: bytes) -> tuple[dict[str, str], dict[str, tuple[bytes, str]]]:
    """(text fields, files by part name) of a multipart/form-data body."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    message = BytesParser(policy=HTTP).parsebytes(head + raw)
    if not message.is_multipart():
        raise PayloadError("body", "multipart body without its boundary")
    fields: dict[str, str] = {}
    files: dict[str, tuple[bytes, str]] = {}
    for part in message.iter_parts() if hasattr(message, "iter_parts") else []:
        assert isinstance(part, Message)
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or not name:
            raise PayloadError("body", "a multipart part without a name")
        if name in fields or name in files:
            raise ValidationError(name, "given twice")
        payload = part.get_payload(decode=True)
        content = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            files[name] = (content, filename)
        else:
            fields[name] = content.decode("utf-8", "replace")
    return fields, files
