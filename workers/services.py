"""What the handlers of one worker process share, typed: `JobContext.services`."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .bots import Bots
    from .hooks import HookSender


@dataclass
class Services:
    """One per worker process. `bots` (Telegram clients, the shared rate limiter, the autocommit
    pool) is made on first use by `bots_for`, once the event loop and the database exist."""

    bots: Bots | None = None
    # Event webhook delivery: its HTTP clients and concurrency bound (workers/hooks.py), made on first use.
    hooks: HookSender | None = None
    # The broadcast sender's bookkeeping in this process: rows with a send in flight (a sweep must
    # not take them for a crashed sender's), and how many senders run per broadcast.
    sending: set[int] = field(default_factory=set)
    senders: Counter[int] = field(default_factory=Counter)
    # Join-request decision jobs of this process take rate-limit tokens one at a time: one of them
    # polls the shared bucket at any moment, not every job (workers/join_decisions.py).
    decision_tokens: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def aclose(self) -> None:
        if self.bots is not None:
            await self.bots.aclose()
        if self.hooks is not None:
            await self.hooks.aclose()
