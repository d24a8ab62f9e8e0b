"""Which handlers and periodic jobs each pool runs. Unknown job types fail with a clear error."""

from __future__ import annotations

from tgms_tui.backend.config import Settings
from tgms_tui.backend.queue import Pool

from . import maintenance
from .runner import Handler, PeriodicJob


def handlers_for(pool: Pool) -> dict[str, Handler]:
    if pool == "main":
        return {maintenance.PRUNE_JOB: maintenance.prune_finished_jobs}
    return {}


def periodic_for(pool: Pool, settings: Settings) -> tuple[PeriodicJob, ...]:
    if pool == "main":
        return (PeriodicJob(maintenance.PRUNE_JOB, 3600.0),)
    return ()
