"""Which handlers and periodic jobs each pool runs. Unknown job types fail with a clear error."""

from __future__ import annotations

from tgms_tui.backend.config import Settings
from tgms_tui.backend.queue import Pool

from . import group_sender, inactive_members, join_gate, join_requests, maintenance, member_counts, updates
from .runner import Handler, PeriodicJob


def handlers_for(pool: Pool) -> dict[str, Handler]:
    if pool == "main":
        return {
            maintenance.PRUNE_JOB: maintenance.prune_finished_jobs,
            updates.JOB_TYPE: updates.process_telegram_update,
        }
    return {
        join_requests.JOB_TYPE: join_requests.process_join_request,
        join_gate.CALLBACK_JOB: join_gate.process_callback_query,
        join_gate.DECIDE_JOB: join_gate.decide_join_requests,
        join_gate.DEADLINE_JOB: join_gate.join_request_deadline,
        group_sender.JOB_TYPE: group_sender.send_to_groups,
        member_counts.JOB_TYPE: member_counts.update_member_counts,
        inactive_members.JOB_TYPE: inactive_members.kick_inactive_members,
    }


def periodic_for(pool: Pool, settings: Settings) -> tuple[PeriodicJob, ...]:
    if pool == "main":
        return (PeriodicJob(maintenance.PRUNE_JOB, 3600.0),)
    return (
        PeriodicJob(member_counts.JOB_TYPE, settings.member_count_interval),
        PeriodicJob(inactive_members.JOB_TYPE, inactive_members.DAILY, inactive_members.periodic_payload()),
    )
