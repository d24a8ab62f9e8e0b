"""Keep secrets out of every line TGMS writes.

Bot tokens travel inside Bot API URLs (`/bot<token>/method`), so any URL, exception text or log line
can carry one. `redact()` removes anything shaped like a token plus every configured secret, and
`install_log_redaction()` applies it to every log record of the process.

Every registered secret is redacted whatever its length. One of 8 characters or more is removed wherever
it occurs; a shorter one (TGMS's own secrets are 16+, but a caller may register anything) only where it
stands alone, not inside a longer run of letters, digits, `_` or `-`: replacing a 2-letter secret inside
every word would make the logs unreadable, and such a run is not that secret.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

# <bot id>:<secret> — the secret part is 30+ chars of [A-Za-z0-9_-] in real tokens.
TOKEN_PATTERN = re.compile(r"(?<![A-Za-z0-9])(bot)?(\d{3,20}):[A-Za-z0-9_-]{20,}")

# Below this length a secret is matched as a whole word only (see the module docstring).
SUBSTRING_MIN_LENGTH = 8
_WORD = "A-Za-z0-9_-"

_extra_secrets: set[str] = set()
_long_secrets: tuple[str, ...] = ()  # longest first, so that a secret containing another goes whole
_short_pattern: re.Pattern[str] | None = None


def register_secrets(secrets: Iterable[str]) -> None:
    """Also redact these exact values (API keys, webhook secrets), whatever their length."""
    global _long_secrets, _short_pattern
    _extra_secrets.update(s for s in secrets if s)
    by_length = sorted(_extra_secrets, key=len, reverse=True)
    _long_secrets = tuple(s for s in by_length if len(s) >= SUBSTRING_MIN_LENGTH)
    short = [re.escape(s) for s in by_length if len(s) < SUBSTRING_MIN_LENGTH]
    if short:
        _short_pattern = re.compile(f"(?<![{_WORD}])(?:{'|'.join(short)})(?![{_WORD}])")


def redact(text: str) -> str:
    """`text` with bot tokens shown as `<bot id>:***` and registered secrets as `***`."""
    text = TOKEN_PATTERN.sub(lambda m: f"{m.group(1) or ''}{m.group(2)}:***", text)
    for secret in _long_secrets:
        if secret in text:
            text = text.replace(secret, "***")
    if _short_pattern is not None:
        text = _short_pattern.sub("***", text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's final message through `redact` (args are folded in first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not kill logging
            return True
        cleaned = redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


def install_log_redaction(secrets: Iterable[str] = ()) -> None:
    """Redact every record that reaches any handler of the root logger (call after handlers exist)."""
    register_secrets(secrets)
    root = logging.getLogger()
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
