"""What a paid broadcast costs: Telegram's `allow_paid_broadcast` lets a bot send up to 1000 messages/s
instead of ~30 for 0.1 Telegram Star per message, taken from the bot's Star balance.

Telegram bills only the messages that go beyond its free broadcast rate, so `estimated_stars` is an
upper bound (every copy billed); at the paid rate nearly all are. The composer, `tgms broadcast --paid`
and the admin API show it before anything is sent. A send the balance cannot pay for fails with
BALANCE_TOO_LOW (the sender then stops the broadcast; no group is blamed).
"""

from __future__ import annotations

__all__ = ["FREE_RATE", "PAID_RATE", "STARS_PER_MESSAGE", "describe_cost", "estimated_stars"]

STARS_PER_MESSAGE = 0.1
FREE_RATE = 30  # messages/s Telegram allows a bot's broadcasts without paying (Bots FAQ)
PAID_RATE = 1000  # messages/s with allow_paid_broadcast


def estimated_stars(messages: int) -> float:
    """The most a paid broadcast of `messages` copies can cost, in Stars (every copy billed)."""
    return round(max(0, messages) * STARS_PER_MESSAGE, 1)


def describe_cost(messages: int) -> str:
    return (
        f"up to {estimated_stars(messages):,.1f} Telegram Stars ({messages:,} message{'s' if messages != 1 else ''} "
        f"× {STARS_PER_MESSAGE:g} Star; only those beyond Telegram's free ~{FREE_RATE}/s are billed)"
    )
