"""What the routes share: metrics from the start, the pool and the intake once the lifespan opened them."""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg_pool import AsyncConnectionPool

from .intake import UpdateIntake
from .metrics import WebhookMetrics


class NotStarted(RuntimeError):
    """A route ran before the lifespan opened the database pool (or after it closed it)."""


@dataclass
class Runtime:
    metrics: WebhookMetrics = field(default_factory=WebhookMetrics)
    pool: AsyncConnectionPool | None = None
    intake: UpdateIntake | None = None

    def require_pool(self) -> AsyncConnectionPool:
        if self.pool is None:
            raise NotStarted("database pool not open")
        return self.pool
