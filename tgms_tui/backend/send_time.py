"""The send times operators type (`now`, `+30m`, `18:00`, `2026-05-01 09:00`, ISO-8601), read one way
by the TUI composer, `tgms broadcast --send-at` and `tgms broadcast edit --send-at`.

The admin API takes ISO-8601 with an offset only (a program sends it, and a wall-clock time there
would mean the server's timezone, not the caller's); this parser turns what a person types on this
machine into that form, in this machine's timezone.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

__all__ = ["FORMS", "parse_send_time"]

FORMS = "now, +30m, +2h, +1d, 18:00, 2026-05-01 09:00 or an ISO-8601 time"

_RELATIVE = re.compile(r"^\+\s*(\d+(?:\.\d+)?)\s*([smhd])$", re.I)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_send_time(value: str, now: datetime | None = None) -> str | None:
    """The send time as an ISO-8601 string with this machine's offset, None for "now".

    Accepts: empty / "now"; "+30m", "+2h", "+1d"; "18:00" (today, or tomorrow if already past);
    "2026-05-01 09:00" (local); any ISO-8601 time with an offset. ValueError with a hint otherwise.
    """
    text = value.strip()
    current = (now or datetime.now()).astimezone()
    if not text or text.lower() == "now":
        return None
    if m := _RELATIVE.match(text):
        amount, unit = float(m.group(1)), m.group(2).lower()
        delta = timedelta(**{_UNITS[unit]: amount})
        return (current + delta).isoformat(timespec="seconds")
    if re.fullmatch(r"\d{1,2}:\d{2}", text):
        hour, minute = (int(p) for p in text.split(":"))
        if hour > 23 or minute > 59:
            raise ValueError("not a time of day (HH:MM, 00:00-23:59)")
        when = current.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if when < current:
            when += timedelta(days=1)
        return when.isoformat(timespec="seconds")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"use {FORMS}") from None
    if when.tzinfo is None:
        when = when.astimezone()  # a wall-clock time typed here means this machine's timezone
    return when.isoformat(timespec="seconds")
