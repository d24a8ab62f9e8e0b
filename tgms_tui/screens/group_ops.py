"""Group actions shared by the dashboard and the group detail screen (confirm, write, tell)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from tgms_tui.backend import group_actions, groups, join_gate
from tgms_tui.backend.dashboard import GroupRow, JobDetail, fetch_job
from tgms_tui.widgets import format as fmt

from .add_group import AddGroupScreen
from .confirm import ConfirmScreen
from .join_queue import JoinPolicyScreen
from .phase import PhaseScreen

if TYPE_CHECKING:
    from tgms_tui.app import TGMSApp


def _label(g: GroupRow) -> str:
    """How dialogs and notices name a group: its title (made safe and cut short) and its id."""
    return f"{fmt.plain(g.title, 60)} ({g.group_id})" if g.title else str(g.group_id)


async def toggle_active(app: TGMSApp, g: GroupRow) -> bool:
    """Deactivation asks first (the group then gets nothing). Reactivation first has the TGMS worker
    ask Telegram whether the bot can still manage the group (the check `tgms groups set --active yes`
    makes); when it cannot, the reason is shown and the operator may reactivate anyway."""
    if app.refuse_if_read_only("activating or deactivating a group"):
        return False
    if not g.is_active:
        return await _reactivate(app, g)
    question = (
        f"Deactivate group {_label(g)}?\n\n"
        "It will get no broadcasts and its join requests are skipped until it is activated again."
    )
    if not await app.push_screen_wait(ConfirmScreen(question, yes="Deactivate", no="Keep active")):
        return False
    if not await app.perform(lambda conn: group_actions.set_active(conn, g.group_id, False), "Changing the group"):
        return False
    app.notify(f"Group {_label(g)} deactivated.", timeout=3)
    return True


async def _reactivate(app: TGMSApp, g: GroupRow) -> bool:
    job_id = await app.attempt(
        lambda conn: groups.request_registration(conn, g.group_id, reactivate=True), "Queueing the rights check"
    )
    if job_id is None:
        return False
    app.notify(f"Checking the bot's rights in {_label(g)} with Telegram (job {job_id})…", timeout=3)
    job = await _finished(app, job_id)
    if job is not None and job.status == "done":
        app.notify(f"Group {_label(g)} activated.", timeout=4)
        return True
    if job is None or job.status != "failed":
        detail = f" (last error: {job.last_error})" if job is not None and job.last_error else ""
        app.notify(
            f"Job {job_id} is still {job.status if job else 'unknown'}{detail}: is the TGMS worker running? It "
            "reactivates the group once the check passes; the Jobs pane shows how it ends.",
            severity="warning",
            timeout=15,
        )
        return False
    reason = job.last_error or "the check failed"
    question = f"{reason}\n\nReactivate {_label(g)} anyway? Broadcasts and join requests there may fail."
    if not await app.push_screen_wait(ConfirmScreen(question, yes="Reactivate anyway", no="Leave inactive")):
        app.notify(f"Group {_label(g)} left inactive: {reason}", severity="warning", timeout=8)
        return False
    if not await app.perform(lambda conn: group_actions.set_active(conn, g.group_id, True), "Changing the group"):
        return False
    app.notify(f"Group {_label(g)} activated anyway.", severity="warning", timeout=5)
    return True


async def set_phase(app: TGMSApp, g: GroupRow) -> bool:
    if app.refuse_if_read_only("setting the phase"):
        return False
    phase = await app.push_screen_wait(PhaseScreen(g.phase, _label(g)))
    if phase is None or phase == g.phase:
        return False
    if not await app.perform(lambda conn: group_actions.set_phase(conn, g.group_id, phase), "Setting the phase"):
        return False
    app.notify(f"Group {_label(g)} is now in phase {phase}.", timeout=3)
    return True


async def toggle_final(app: TGMSApp, g: GroupRow) -> bool:
    if app.refuse_if_read_only("changing final-message permission"):
        return False
    allowed = not g.final_message_allowed
    if not await app.perform(
        lambda conn: group_actions.set_final_message_allowed(conn, g.group_id, allowed),
        "Changing final-message permission",
    ):
        return False
    app.notify(f"Final message {'allowed' if allowed else 'not allowed'} in {_label(g)}.", timeout=3)
    return True


async def release_hold(app: TGMSApp, g: GroupRow) -> bool:
    """End the group's raid hold now (the queue keeps its held requests for a decision)."""
    if app.refuse_if_read_only("releasing a raid hold"):
        return False
    if not g.held:
        app.notify(f"Group {_label(g)} is not on raid hold.", severity="warning", timeout=3)
        return False
    if not await app.perform(lambda conn: join_gate.release_group(conn, g.group_id), "Releasing the hold"):
        return False
    app.notify(f"Group {_label(g)} released; its held requests wait in the queue (Q).", timeout=4)
    return True


async def refresh_members(app: TGMSApp, g: GroupRow) -> bool:
    if app.refuse_if_read_only("refreshing the member count"):
        return False
    job_id = await app.attempt(
        lambda conn: group_actions.request_member_count_refresh(conn, g.group_id), "Queueing a member count"
    )
    if job_id is None:
        return False
    app.notify(f"Member count refresh for {_label(g)} queued (job {job_id}).", timeout=3)
    return True


# How long the add-group action waits for the TGMS worker's answer before leaving it to the Jobs pane.
ADD_GROUP_WAIT = 30.0


async def add_group(app: TGMSApp) -> bool:
    """Ask for an id, confirm, queue the TGMS worker's check-and-register job and report its outcome:
    the control center makes no Bot API calls itself."""
    if app.refuse_if_read_only("adding a group"):
        return False
    group_id = await app.push_screen_wait(AddGroupScreen())
    if group_id is None:
        return False
    question = (
        f"Add group {group_id}?\n\nThe TGMS worker asks Telegram whether the bot is an administrator there "
        "with 'Invite Users via Link', then registers the group with its title."
    )
    if not await app.push_screen_wait(ConfirmScreen(question, yes="Add", no="Cancel")):
        return False
    job_id = await app.attempt(lambda conn: groups.request_registration(conn, group_id), "Queueing the group check")
    if job_id is None:
        return False
    app.notify(f"Checking group {group_id} with Telegram (job {job_id})…", timeout=3)
    job = await _finished(app, job_id)
    if job is not None and job.status == "done":
        app.notify(f"Group {group_id} added.", timeout=5)
        return True
    if job is not None and job.status == "failed":
        app.notify(f"Group {group_id} not added: {job.last_error}", severity="error", timeout=15)
        return False
    detail = f" (last error: {job.last_error})" if job is not None and job.last_error else ""
    app.notify(
        f"Job {job_id} is still {job.status if job else 'unknown'}{detail}: is the TGMS worker running? "
        "The Jobs pane shows how it ends.",
        severity="warning",
        timeout=15,
    )
    return False


async def _finished(app: TGMSApp, job_id: int) -> JobDetail | None:
    deadline = time.monotonic() + ADD_GROUP_WAIT
    job: JobDetail | None = None
    while time.monotonic() < deadline:
        job = await app.attempt(lambda conn: fetch_job(conn, job_id), "Reading the group check") or job
        if job is not None and job.status in ("done", "failed", "cancelled"):
            return job
        await asyncio.sleep(0.5)
    return job


async def set_join_policy(app: TGMSApp, g: GroupRow) -> bool:
    if app.refuse_if_read_only("setting the join policy"):
        return False
    current = await app.attempt(lambda conn: join_gate.group_gate(conn, g.group_id), "Reading the join policy")
    if current is None:
        return False
    policy = await app.push_screen_wait(JoinPolicyScreen(current.join_policy, _label(g)))
    if policy is None or policy == current.join_policy:
        return False
    if not await app.perform(
        lambda conn: join_gate.set_group_gate(conn, g.group_id, {"join_policy": policy}), "Setting the join policy"
    ):
        return False
    app.notify(f"Join policy of {_label(g)}: {policy}.", timeout=3)
    return True
