"""Turning a webhook body into an update we can store, or a precise reason to refuse it.

Everything accepted here must be storable as jsonb: PostgreSQL rejects NUL characters, unpaired
surrogates and NaN/Infinity, and one such value would fail the whole group-commit batch it rides in.
So those are refused (NaN/Infinity, absurd nesting) or repaired (NUL and unpaired surrogates become
U+FFFD, so a real update is never lost over one odd character) before an update reaches the batcher.

Telegram writes every update alike: compact JSON, `update_id` first, then the one key naming the
update's type. A body of exactly that shape, with no \\u escape (the only way to spell NUL or a
surrogate) and no deep nesting, is not decoded here at all (`checked=False`): PostgreSQL parses it
anyway when it stores it as jsonb, and refuses the batch if it is not JSON; the intake then runs
`parse_update(..., trust_shape=False)` on it to answer 400 with the precise reason. Decoding a 500-byte
update in Python cost about a tenth of the server's CPU per update. (Numbers PostgreSQL takes and
Python would not, such as 1e999, are then stored as PostgreSQL reads them; json_loads.py makes sure
no such number can stop a worker.)
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, NamedTuple

MAX_BODY_BYTES = 1024 * 1024
MAX_DEPTH = 64  # real updates nest < 10 deep; this only stops pathological bodies cheaply
_BIGINT_MIN, _BIGINT_MAX = -(2**63), 2**63 - 1

# Update types Telegram documents (Bot API 10.x); anything else is still accepted and routed, but is
# counted under "other" so a stream of made-up keys cannot blow up the metrics' label set.
KNOWN_TYPES = frozenset(
    {
        "message", "edited_message", "channel_post", "edited_channel_post", "business_connection",
        "business_message", "edited_business_message", "deleted_business_messages", "message_reaction",
        "message_reaction_count", "inline_query", "chosen_inline_result", "callback_query",
        "shipping_query", "pre_checkout_query", "purchased_paid_media", "poll", "poll_answer",
        "my_chat_member", "chat_member", "chat_join_request", "chat_boost", "removed_chat_boost",
        "managed_bot", "guest_message", "unknown",
    }
)  # fmt: skip


class UpdateRejected(ValueError):
    """The body is not a storable update; `reason` is a short metrics label, the message is for humans."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ParsedUpdate(NamedTuple):  # a NamedTuple: built for every update, 3x cheaper than a frozen dataclass
    update_id: int
    update_type: str
    json_text: str  # the update as JSON text for PostgreSQL's jsonb (usually the body itself)
    checked: bool = True  # False: only its shape was checked; PostgreSQL validates the JSON


# `{"update_id":N,"<type>":{` with N a JSON integer; the type key without escapes.
_TELEGRAM_HEAD = re.compile(rb'\{"update_id":(-?(?:0|[1-9][0-9]{0,18})),"([^"\\]{1,64})":\{')
# For a body's skeleton (bytes.translate): square brackets become braces, everything but quotes and
# brackets is deleted.
_BRACKETS_AS_BRACES = bytes.maketrans(b"[]", b"{}")
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"{}[]')


def _single_object(body: bytes) -> bool:
    """Whether `body` (starting with `{`, no \\u escape) is ONE object, its first brace closed by its
    last byte, with at most MAX_DEPTH brackets outside strings (a cheap bound on its depth). The
    intake splices an unchecked body into a larger JSON text as the value of "update", so anything
    after that closing brace (`},"bot":"tgms"`, `}{...`, `},{...`) would become keys or elements of
    the payload around it.

    Byte operations only (C speed; this runs for every update): escaped backslashes, then escaped
    quotes are removed, which leaves every quote a string delimiter; of the quotes and brackets left
    the strings are dropped; the brackets between the first and the last byte must then nest. Bracket
    kinds are not told apart: a body whose kinds do not match is not JSON, and PostgreSQL refuses it."""
    if body[-1:] != b"}":
        return False
    if b"\\" in body:
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Strings without brackets inside (nearly all) become `""` and go in one replace: scanning from
    # the left, an opening quote is removed with the next byte only if that is its closing quote.
    skeleton = body.translate(_BRACKETS_AS_BRACES, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in skeleton:  # some string holds a bracket: drop what lies between quote pairs
        pieces = skeleton.split(b'"')
        if len(pieces) % 2 == 0:  # an odd number of quotes: a string runs past the end
            return False
        skeleton = b"".join(pieces[::2])
    if len(skeleton) > 2 * MAX_DEPTH:
        return False
    inner = skeleton[1:-1]  # skeleton[0] is the body's first byte, skeleton[-1] its last
    while inner:
        reduced = inner.replace(b"{}", b"")
        if len(reduced) == len(inner):
            return False  # a closing bracket too many: the first brace closes before the end
        inner = reduced
    return True


def _telegram_shaped(body: bytes) -> ParsedUpdate | None:
    """The update without decoding it, if `body` has Telegram's exact shape; None to decode it."""
    match = _TELEGRAM_HEAD.match(body)
    if (
        match is None
        or b"\\u" in body
        or body.count(b'"update_id"') != 1  # a second update_id key would win in the stored jsonb
        or not _single_object(body)
    ):
        return None
    update_id = int(match[1])
    if not _BIGINT_MIN <= update_id <= _BIGINT_MAX:
        return None
    try:
        return ParsedUpdate(update_id, match[2].decode("utf-8"), body.decode("utf-8"), False)
    except UnicodeDecodeError:
        return None


def _reject_constant(name: str) -> Any:
    raise UpdateRejected("malformed_json", f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise UpdateRejected("malformed_json", "number out of range")
    return value


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def parse_update(body: bytes, *, trust_shape: bool = True) -> ParsedUpdate:
    """Parse and check one webhook body (already size-limited by the caller). With `trust_shape`, a
    body shaped as Telegram writes them is returned unchecked (see the module docstring)."""
    if trust_shape and (shaped := _telegram_shaped(body)) is not None:
        return shaped
    try:
        text = body.decode("utf-8")
        obj = _DECODER.decode(text)
    except UpdateRejected:
        raise
    except RecursionError:
        raise UpdateRejected("too_deep", "JSON nested too deeply") from None
    except ValueError:  # JSONDecodeError, UnicodeDecodeError, int digits limit
        raise UpdateRejected("malformed_json", "body is not valid UTF-8 JSON") from None
    if not isinstance(obj, dict):
        raise UpdateRejected("not_an_object", "an update must be a JSON object")
    update_id = obj.get("update_id")
    if type(update_id) is not int:  # bool is an int subclass: refuse it too
        raise UpdateRejected("no_update_id", "update_id must be an integer")
    if not _BIGINT_MIN <= update_id <= _BIGINT_MAX:
        raise UpdateRejected("no_update_id", "update_id out of range")
    # Cheap gates (C speed): only bodies that could be deep, or that contain \u escapes (the only way
    # to spell NUL or an unpaired surrogate in valid UTF-8 JSON), pay for a walk.
    if body.count(b"{") + body.count(b"[") > MAX_DEPTH or b"\\u" in body:
        obj = _sanitised(obj)
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    update_type = "unknown"
    for key in obj:  # the one key besides update_id; a plain loop is cheapest on this hot path
        if key != "update_id":
            update_type = key
            break
    return ParsedUpdate(update_id, update_type, text)


def metric_type(update_type: str) -> str:
    return update_type if update_type in KNOWN_TYPES else "other"


def _clean_str(value: str) -> str:
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # json.loads already joined valid pairs, so any surrogate left is unpaired.
        value = "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in value)
    return value


def _sanitised(root: dict[str, Any]) -> dict[str, Any]:
    """Copy of `root` with NUL/unpaired surrogates replaced; UpdateRejected if nested > MAX_DEPTH.
    Iterative, so depth never touches the interpreter's recursion limit."""
    result: dict[str, Any] = {}
    stack: list[tuple[Any, Any, int]] = [(root, result, 1)]
    while stack:
        source, target, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise UpdateRejected("too_deep", f"JSON nested deeper than {MAX_DEPTH} levels")
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, value in items:
            if isinstance(value, dict):
                copy: Any = {}
                stack.append((value, copy, depth + 1))
            elif isinstance(value, list):
                copy = [None] * len(value)
                stack.append((value, copy, depth + 1))
            elif isinstance(value, str):
                copy = _clean_str(value)
            else:
                copy = value
            if isinstance(target, dict):
                target[_clean_str(str(key))] = copy
            else:
                target[key] = copy
    return result
