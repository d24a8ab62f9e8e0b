"""Broadcast requests validated with Telegram's own rules, before anything is stored or sent.

A broadcast that Telegram would reject (bad markup, too long, bad URL) would fail in every group at
once, and content errors must never count against a group. So the admin API, the CLI, the TUI
composer and the sender all judge a broadcast by the same rules, with messages worded like Telegram's:

1. `validate_broadcast` (here, no database): the fields, the markup (`tgms_tui.backend.markup`), the
   limits of the text as written, the target's shape and the schedule;
2. `broadcasts.check_submission` (in the transaction that stores the broadcast): the listed groups
   exist and would be sent to, the target reaches at least one group, and the text still fits and
   parses with the longest debug code the broadcast can get appended (`debug_code.refusal`);
3. the sender runs the same `debug_code.refusal` with the codes it actually gave before its first send.

So what the sender would refuse is refused at submit: a 422 naming the field, exit status 2 from the
command line, a blocking ✗ in the composer.

No Textual or Starlette imports: the webhook server, the workers and the TUI all use this module.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from .markup import check_markup, normalise_parse_mode, visible_length

# check_markup and visible_length are re-exported for callers that import them from here.
__all__ = [
    "CAPTION_LIMIT",
    "TEXT_LIMIT",
    "BroadcastRequest",
    "ValidationError",
    "check_markup",
    "normalise_target",
    "validate_broadcast",
    "visible_length",
]

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
RAW_TEXT_BYTES_LIMIT = 32768  # Telegram: "text is too long" before parsing
URL_LIMIT = 2048
MAX_TARGET_GROUPS = 10_000
SEND_AT_TOLERANCE = timedelta(minutes=1)
PHASES = ("growth", "monitoring")
_BIGINT = 2**63

_KNOWN_FIELDS = {
    "text", "photo_url", "caption", "parse_mode", "target", "final", "is_final", "send_at", "paid",
    "allow_paid_broadcast",
}  # fmt: skip


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
    # Telegram's allow_paid_broadcast on every copy: up to 1000 messages/s for Stars (docs/broadcasts.md).
    paid: bool = False


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
    paid = _paid(data)

    return BroadcastRequest(
        text=text,
        photo_url=photo_url,
        caption=caption,
        parse_mode=parse_mode,
        target=normalise_target(data.get("target")),
        is_final=final,
        send_at=_send_at(data.get("send_at"), now),
        paid=paid,
    )


def _paid(data: Mapping[str, Any]) -> bool:
    """`paid` (or Telegram's own name, `allow_paid_broadcast`): a boolean, false when absent."""
    for name in ("paid", "allow_paid_broadcast"):
        value = data.get(name)
        if value is not None and not isinstance(value, bool):
            raise ValidationError(name, "must be true or false")
    return bool(data.get("paid") or data.get("allow_paid_broadcast"))


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
    if re.fullmatch(r"tgms-photo:[0-9a-f]{64}", url):
        return  # a photo uploaded from disk and stored by TGMS (broadcast_photos checks that it exists)
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
