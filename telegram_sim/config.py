"""Simulator settings: Telegram's limits by default, switchable per instance.

Tests that are not about flood limits turn them off (`SimConfig(enforce_flood_limits=False)` or
`POST /_sim/config`), and webhook retry timings are small so redelivery tests stay fast while
keeping Telegram's shape (first retry immediate, then doubling, `Retry-After` wins).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SimConfig:
    """Mutable knobs of one simulator instance (read under the state lock)."""

    # Flood control (Bots FAQ: ~30 msg/s per bot, 20 msg/min per group, ~1 msg/s per chat with bursts).
    enforce_flood_limits: bool = True
    per_bot_per_sec: float = 30.0
    # allow_paid_broadcast: up to 1000 messages/s, each beyond per_bot_per_sec billed 0.1 Star.
    paid_per_bot_per_sec: float = 1000.0
    per_group_per_min: float = 20.0
    per_chat_per_sec: float = 1.0
    per_chat_burst: int = 3
    # setWebhook calls with changed parameters closer than this get 429 "retry after 1" (server source).
    set_webhook_min_interval: float = 1.0

    # Webhook delivery.
    webhook_timeout: float = 10.0
    webhook_retry_first_delay: float = 0.0
    webhook_retry_base: float = 0.05
    webhook_retry_max: float = 2.0
    webhook_retry_after_max: float = 3600.0
    default_max_connections: int = 40

    # getUpdates long polling cap (seconds).
    max_long_poll: float = 50.0
    # How many recorded Bot API calls / delivery attempts to keep (oldest dropped first).
    max_recorded_calls: int = 200_000
    max_recorded_deliveries: int = 20_000

    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("extra")
        return data

    def update(self, changes: dict[str, Any]) -> list[str]:
        """Apply known keys (coerced to the field's type); return the unknown ones."""
        unknown: list[str] = []
        for key, value in changes.items():
            if key == "extra" or key not in self.__dataclass_fields__:
                unknown.append(key)
                continue
            current = getattr(self, key)
            if isinstance(current, bool):
                value = _as_bool(value)
            elif isinstance(current, int):
                value = int(value)
            elif isinstance(current, float):
                value = float(value)
            setattr(self, key, value)
        return unknown


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)
