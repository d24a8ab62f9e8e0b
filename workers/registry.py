"""Which handlers, time limits and periodic jobs each pool runs. Unknown job types fail with a clear
error."""

from __future__ import annotations

from tgms_tui.backend import analytics as analytics_backend
from tgms_tui.backend.config import ENV_NAMES, ConfigError, Settings
from tgms_tui.backend.queue import Pool

from . import (
    analytics,
    bans,
    followups,
    group_check,
    group_sender,
    hooks,
    inactive_members,
    invite_links,
    join_decisions,
    join_gate,
    join_requests,
    maintenance,
    member_counts,
    test_sends,
    updates,
)
from .runner import Handler, PeriodicJob


def handlers_for(pool: Pool) -> dict[str, Handler]:
    if pool == "main":
        return {
            maintenance.PRUNE_JOB: maintenance.prune_finished_jobs,
            analytics.JOB_TYPE: analytics.roll_up,
            updates.JOB_TYPE: updates.process_telegram_update,
        }
    return {
        join_requests.JOB_TYPE: join_requests.process_join_request,
        join_gate.CALLBACK_JOB: join_gate.process_callback_query,
        join_gate.DECIDE_JOB: join_decisions.decide_join_requests,
        join_gate.DEADLINE_JOB: join_gate.join_request_deadline,
        join_gate.SWEEP_JOB: join_decisions.sweep_abandoned_decisions,
        group_sender.JOB_TYPE: group_sender.send_to_groups,
        member_counts.JOB_TYPE: member_counts.update_member_counts,
        inactive_members.JOB_TYPE: inactive_members.kick_inactive_members,
        bans.JOB_TYPE: bans.apply_fleet_ban,
        invite_links.JOB_TYPE: invite_links.manage_invite_links,
        group_check.JOB_TYPE: group_check.register_group,
        followups.JOB_TYPE: followups.broadcast_followup,
        test_sends.JOB_TYPE: test_sends.broadcast_test_send,
        hooks.JOB_TYPE: hooks.deliver_hooks,
        hooks.DAILY_JOB: hooks.fleet_daily,
        hooks.SWEEP_JOB: hooks.sweep_lanes,
    }


def periodic_for(pool: Pool, settings: Settings) -> tuple[PeriodicJob, ...]:
    if pool == "main":
        return (
            PeriodicJob(maintenance.PRUNE_JOB, 3600.0),
            PeriodicJob(analytics.JOB_TYPE, analytics_backend.ROLLUP_EVERY_SECONDS),
        )
    return (
        PeriodicJob(member_counts.JOB_TYPE, settings.member_count_interval),
        PeriodicJob(inactive_members.JOB_TYPE, inactive_members.DAILY, inactive_members.periodic_payload()),
        PeriodicJob(hooks.DAILY_JOB, hooks.DAILY),
        PeriodicJob(hooks.SWEEP_JOB, hooks.SWEEP_EVERY),
        # rows of decision jobs that ended for good are resolved a lease after the job's end
        PeriodicJob(join_gate.SWEEP_JOB, settings.lease_seconds),
    )


# Each job type's time limit in seconds (TGMS_JOB_TIMEOUTS overrides them). Chosen per type:
TIME_LIMITS: dict[str, float] = {
    # one approval: two statements and one or two Bot API calls (each capped at 30 s by the client;
    # a re-run after a cut recognises an earlier approval or message by what it recorded first). The
    # limit is also what frees a handler stuck after a database crash: 45 s keeps the wait bounded
    join_requests.JOB_TYPE: 45.0,
    # one update: a few statements, at most a reply
    updates.JOB_TYPE: 60.0,
    # resumable: a sender works in slices that end before this limit and carries on in a fresh run
    # of the same job, so the limit bounds a slice, never a whole broadcast
    group_sender.JOB_TYPE: 600.0,
    # periodic: one paced call per group; a pass must end well within its period (1 h by default)
    member_counts.JOB_TYPE: 1800.0,
    # daily: a status read and a kick per inactive member, paced
    inactive_members.JOB_TYPE: 3600.0,
    maintenance.PRUNE_JOB: 600.0,
    # at most a week of hours per run (one index probe per group and hour), then the snapshot
    analytics.JOB_TYPE: 600.0,
    # one paced ban or unban per group (30/s shares the bot's bucket): 1 h covers ~100k groups; a cut
    # run resumes from its per-group rows (ban/unban are idempotent), so a limit hit is a retry, not a loss
    bans.JOB_TYPE: 3600.0,
    # one createChatInviteLink / revokeChatInviteLink per chosen group, paced
    invite_links.JOB_TYPE: 600.0,
    # a button press: one claim statement, one approve or decline call, one answerCallbackQuery
    join_gate.CALLBACK_JOB: 90.0,
    # an operator's decisions at the bot's rate, in slices that end a margin before this limit and
    # carry on in a fresh run: a held raid of thousands takes minutes
    join_gate.DECIDE_JOB: 3600.0,
    # one request past its deadline: decline or queue it
    join_gate.DEADLINE_JOB: 90.0,
    # one statement, a getChatMember per abandoned approval (side by side), one statement
    join_gate.SWEEP_JOB: 120.0,
    # one paced edit/delete/pin per copy; works in slices (snoozes 30 s before the limit) and resumes
    # from its per-copy rows, so the limit bounds a slice, never a whole follow-up
    followups.JOB_TYPE: 600.0,
    # drains one hook lane in slices that end before this (each attempt is capped by TGMS_HOOKS_TIMEOUT,
    # and a failure snoozes the job instead of waiting in it), so the limit bounds a slice
    hooks.JOB_TYPE: 120.0,
    # one summary statement and a pruning pass
    hooks.DAILY_JOB: 300.0,
    # one statement over the few scheduled lanes
    hooks.SWEEP_JOB: 60.0,
}


def check_time_limits(settings: Settings) -> None:
    """Refuse TGMS_JOB_TIMEOUTS entries naming no job type (a typo would silently change nothing)."""
    known = set(handlers_for("main")) | set(handlers_for("tgms"))
    unknown = sorted(set(settings.job_timeouts) - known)
    if unknown:
        raise ConfigError(
            ENV_NAMES["job_timeouts"], f"unknown job type {unknown[0]!r} (known: {', '.join(sorted(known))})"
        )
