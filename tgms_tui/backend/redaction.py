"""Keep secrets out of every line TGMS writes.

Bot tokens travel inside Bot API URLs (`/bot<token>/method`), so any URL, exception text or log line
can carry one. `redact()` removes anything shaped like a token plus every configured secret, and
`install_log_redaction()` applies it to every log record of the process.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

# <bot id>:<secret> — the secret part is 30+ chars of [A-Za-z0-9_-] in real tokens.
TOKEN_PATTERN = re.compile(r"(?<![A-Za-z0-9])(bot)?(\d{3,20}):[A-Za-z0-9_-]{20,}")

_extra_secrets: set[str] = set()


def register_secrets(secrets: Iterable[str]) -> None:
    """Also redact these exact values (API keys, webhook secrets) wherever they appear."""
    _extra_secrets.update(s for s in secrets if s and len(s) >= 4)


def redact(text: str) -> str:
    """`text` with bot tokens shown as `<bot id>:***` and registered secrets as `***`."""
    text = TOKEN_PATTERN.sub(lambda m: f"{m.group(1) or ''}{m.group(2)}:***", text)
    for secret in _extra_secrets:
        if secret in text:
            text = text.replace(secret, "***")
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
